// The live-config message (worker/worker_process.h) carries CONFIG GET's
// parameters after a reload, as tagged fields an older worker skips.
#include <gtest/gtest.h>

#include "worker_process.h"

namespace redhub::worker {
namespace {

TEST(LiveConfigTest, CarriesTheSettingsAndTheParameters) {
  Options in;
  in.max_clients = 77;
  in.idle_timeout = std::chrono::seconds(9);
  ConfigParameterList params = {{"maxclients", "77"}, {"save", ""}, {"bind", "::1"}};
  std::string payload = EncodeLiveConfig(in, 3, params);
  Options out;
  int level = 0;
  ConfigParameterList got = {{"stale", "1"}};
  DecodeLiveConfig(payload, &out, &level, &got);
  EXPECT_EQ(out.max_clients, 77u);
  EXPECT_EQ(out.idle_timeout.count(), 9);
  EXPECT_EQ(level, 3);
  EXPECT_EQ(got, params);
}

TEST(LiveConfigTest, APayloadWithoutParametersLeavesThemAlone) {
  std::string payload = EncodeLiveConfig(Options{}, 1);  // as an older master sends
  Options out;
  int level = 0;
  ConfigParameterList got = {{"maxclients", "5"}};
  DecodeLiveConfig(payload, &out, &level, &got);
  EXPECT_EQ(got, (ConfigParameterList{{"maxclients", "5"}}));
  DecodeLiveConfig(EncodeLiveConfig(Options{}, 1, {{"a", "b"}}), &out, &level);  // no list kept
}

}  // namespace
}  // namespace redhub::worker
