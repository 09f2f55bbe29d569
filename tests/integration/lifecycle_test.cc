// Stopping: SIGTERM ends the server cleanly, closing idle clients.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <string>

#include "server_process.h"

namespace redhub::integration {
namespace {

class LifecycleTest : public ::testing::TestWithParam<ServerKind> {};

TEST_P(LifecycleTest, SigtermWithAnIdleClientExitsZero) {
  auto server = StartServer(GetParam());
  ASSERT_NE(server, nullptr);
  Socket idle = Socket::Connect(server->port());
  ASSERT_TRUE(idle.valid());
  // Answered, so accepted and known to the server.
  ASSERT_TRUE(idle.SendAll("PING\r\n"));
  ASSERT_EQ(idle.RecvN(7), "+PONG\r\n");

  ASSERT_TRUE(server->Signal(SIGTERM));
  int status = 0;
  ASSERT_TRUE(server->WaitExit(kTimeout, &status)) << "still running 5 s after SIGTERM";
  EXPECT_TRUE(WIFEXITED(status)) << "status " << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);

  std::string got;
  EXPECT_TRUE(idle.WaitForClose(kTimeout, &got));
  EXPECT_EQ(got, "");
  // Nobody listens any more.
  EXPECT_FALSE(Socket::Connect(server->port(), milliseconds(1000)).valid());
}

INSTANTIATE_TEST_SUITE_P(Servers, LifecycleTest,
                         ::testing::Values(ServerKind::kRedhubd, ServerKind::kMemoryKv),
                         [](const auto& info) { return KindName(info.param); });

}  // namespace
}  // namespace redhub::integration
