// The one backoff rule (master/child_table.h) against the delays each child
// kind had before it was unified: integration tests time respawns by them.
#include "child_table.h"

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>

namespace redhub::master {
namespace {

TEST(ChildTableTest, WorkerDelaysAreTheFormerOnes) {
  for (int quick = 0; quick <= 20; quick++) {
    double starting = quick > 1 ? std::min(10.0, 0.1 * (1 << std::min(quick - 2, 10))) : 0;
    double serving = quick > 3 ? std::min(0.5, 0.05 * (1 << std::min(quick - 4, 10))) : 0;
    EXPECT_DOUBLE_EQ(RespawnDelay(kWorkerStartingBackoff, quick), starting) << quick;
    EXPECT_DOUBLE_EQ(RespawnDelay(kWorkerServingBackoff, quick), serving) << quick;
  }
}

TEST(ChildTableTest, AdminDelaysAreTheFormerOnes) {
  for (int quick = 0; quick <= 20; quick++) {
    double before = quick == 0 ? 0 : std::min(30.0, 0.5 * (1 << std::min(quick, 6)));
    EXPECT_DOUBLE_EQ(RespawnDelay(kAdminBackoff, quick), before) << quick;
  }
}

TEST(ChildTableTest, AnOldChildResetsTheCount) {
  Respawner r;
  EXPECT_EQ(r.NoteDeath(0.1, kWorkerServingBackoff), 0);
  EXPECT_EQ(r.NoteDeath(0.1, kWorkerServingBackoff), 0);
  EXPECT_EQ(r.NoteDeath(0.1, kWorkerServingBackoff), 0);
  EXPECT_DOUBLE_EQ(r.NoteDeath(0.1, kWorkerServingBackoff), 0.05);
  EXPECT_EQ(r.NoteDeath(kQuickDeath + 1, kWorkerServingBackoff), 0);
  EXPECT_EQ(r.quick_deaths, 0);
}

TEST(ChildTableTest, StartFailuresInARowBackOffUntilOneIsReady) {
  Respawner r;
  EXPECT_EQ(r.NoteStartFailure(0.1, kWorkerStartingBackoff), 0);
  EXPECT_DOUBLE_EQ(r.NoteStartFailure(0.1, kWorkerStartingBackoff), 0.1);
  EXPECT_DOUBLE_EQ(r.NoteStartFailure(0.1, kWorkerStartingBackoff), 0.2);
  r.NoteReady();
  EXPECT_EQ(r.NoteStartFailure(0.1, kWorkerStartingBackoff), 0);
}

// A slot whose serving workers were killed over and over (a kill test, an
// OOM killer) and whose next worker is killed while starting: that one was
// a start, not a start-up that keeps failing, and comes back at once rather
// than after the 10 s cap of the starting rule.
TEST(ChildTableTest, ServingDeathsDoNotMakeAStartFailureWait) {
  Respawner r;
  for (int i = 0; i < 20; i++) {
    r.NoteReady();
    r.NoteDeath(0.5, kWorkerServingBackoff);
  }
  r.NoteReady();  // the 21st worker got ready...
  EXPECT_EQ(r.NoteDeath(0.5, kWorkerServingBackoff), 0.5);
  // ...and the 22nd is killed before it is.
  EXPECT_EQ(r.NoteStartFailure(0.1, kWorkerStartingBackoff), 0);
  EXPECT_DOUBLE_EQ(r.NoteStartFailure(0.1, kWorkerStartingBackoff), 0.1);
}

TEST(ChildTableTest, RestartReasonsHaveTheCountersNames) {
  EXPECT_EQ(NameOf(RestartReasonOf(SIGKILL, false)), "crash");  // WIFSIGNALED
  EXPECT_EQ(NameOf(RestartReasonOf(1 << 8, false)), "exit");    // exit code 1
  EXPECT_EQ(NameOf(RestartReasonOf(SIGKILL, true)), "timeout");
}

}  // namespace
}  // namespace redhub::master
