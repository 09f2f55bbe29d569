// The public framework API (<redhub/server.h>) over the worker's event loop.
#include <redhub/server.h>
#include <unistd.h>

#include "event_loop.h"
#include "net.h"

namespace redhub {

void Conn::set_protocol(int protocol) {
  protocol_ = protocol;
  if (writer_ != nullptr) writer_->set_protocol(protocol);
}

void Conn::Close() {
  close_requested_ = true;
  if (loop_ != nullptr) loop_->CloseRequested(this);
}

void Conn::Abort() {
  abort_requested_ = true;
  Close();
}

int64_t Conn::age_seconds() const { return static_cast<int64_t>(server_->now() - created_at_); }

int64_t Conn::idle_seconds() const { return static_cast<int64_t>(server_->now() - last_active_); }

Server::Server(Options options, Handlers handlers)
    : options_(options),
      loop_(std::make_unique<worker::EventLoop>(options_, std::move(handlers))) {}

Server::~Server() {
  loop_.reset();  // connections first, then the listeners they came from
  for (int fd : listen_fds_) close(fd);
}

std::string Server::Listen(std::string_view address) {
  Address addr;
  if (std::string err = ParseAddress(address, &addr); !err.empty()) {
    return "invalid address '" + std::string(address) + "': " + err;
  }
  ListenOptions lo;
  lo.backlog = options_.listen_backlog;
  std::string err;
  int fd = redhub::Listen(addr, lo, &err);
  if (fd < 0) return err;
  listen_fds_.push_back(fd);
  if (port_ == 0) port_ = BoundPort(fd);
  loop_->AddListener(fd);
  return "";
}

int Server::Run() { return loop_->Run(); }

void Server::Stop() { loop_->Stop(); }

ServerStats Server::stats() const { return loop_->stats(); }

std::string ListenAndServe(std::string_view address, const Options& options, Handlers handlers) {
  Server server(options, std::move(handlers));
  if (std::string err = server.Listen(address); !err.empty()) return err;
  server.Run();
  return "";
}

}  // namespace redhub
