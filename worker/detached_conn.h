// A Conn with no event loop behind it, for running commands outside one
// (unit tests, benchmarks): its ServerView reports a fixed time (1e9 s), no
// batch, default Options, no stats and no other clients.
//
//   DetachedConn conn;
//   service.Dispatch(conn, cmd, writer);
#pragma once

#include <redhub/server.h>

namespace redhub::worker {

class DetachedServer final : public ServerView {
 public:
  double now() const override { return 1e9; }
  uint64_t batch() const override { return batch_; }
  const Options& options() const override { return options_; }
  ServerStats stats() const override { return {}; }
  size_t client_buffer_bytes() const override { return 0; }
  void ForEachClient(const std::function<void(const ClientInfo&)>&) const override {}
  ClientInfo Describe(const Conn& c) const override { return ClientInfo{&c}; }

  // Non-zero: every command is in one batch of the loop (its clock read
  // that ends one command starts the next, as in a pipeline).
  void set_batch(uint64_t batch) { batch_ = batch; }

 private:
  Options options_;
  uint64_t batch_ = 0;
};

class DetachedConn : public Conn {
 public:
  explicit DetachedConn(const DetachedServer* server = &Default()) { server_ = server; }

  static const DetachedServer& Default() {
    static const DetachedServer server;
    return server;
  }
};

}  // namespace redhub::worker
