// The Go RedHub example (SET, GET, DEL, PING, QUIT over a process-local map),
// written against the public API only.
//
//   memory_kv --port 6380 &
//   redis-cli -p 6380 set hello world
#include <redhub/server.h>
#include <strings.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>
#include <unordered_map>

namespace {

bool Is(std::string_view arg, std::string_view name) {
  return arg.size() == name.size() && strncasecmp(arg.data(), name.data(), arg.size()) == 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"memory_kv: the RedHub example server"};
  std::string bind = "127.0.0.1";
  uint16_t port = 6380;
  app.add_option("--bind", bind, "Address to listen on")->capture_default_str();
  app.add_option("--port", port, "TCP port (0 picks a free one)")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  std::unordered_map<std::string, std::string> items;

  redhub::Handlers handlers;
  handlers.on_command = [&items](redhub::Conn&, const redhub::resp::Command& cmd,
                                 redhub::resp::Writer& w) {
    const auto& args = cmd.args;
    std::string_view name = args[0];
    if (Is(name, "set")) {
      if (args.size() != 3) {
        w.Error("ERR wrong number of arguments for 'set' command");
      } else {
        items.insert_or_assign(std::string(args[1]), std::string(args[2]));
        w.OK();
      }
    } else if (Is(name, "get")) {
      if (args.size() != 2) {
        w.Error("ERR wrong number of arguments for 'get' command");
      } else if (auto it = items.find(std::string(args[1])); it == items.end()) {
        w.Null();
      } else {
        w.Bulk(it->second);
      }
    } else if (Is(name, "del")) {
      if (args.size() != 2) {
        w.Error("ERR wrong number of arguments for 'del' command");
      } else {
        w.Int(static_cast<int64_t>(items.erase(std::string(args[1]))));
      }
    } else if (Is(name, "ping")) {
      w.String("PONG");
    } else if (Is(name, "quit")) {
      w.OK();
      return redhub::Action::kClose;
    } else {
      w.Error("ERR unknown command '" + std::string(name) + "'");
    }
    return redhub::Action::kNone;
  };

  redhub::Server server(redhub::Options{}, std::move(handlers));
  if (std::string err = server.Listen(bind + ":" + std::to_string(port)); !err.empty()) {
    fprintf(stderr, "memory_kv: %s\n", err.c_str());
    return 1;
  }
  // Tests start it on port 0 and read the chosen port from this line.
  printf("memory_kv listening on %s:%u\n", bind.c_str(), server.port());
  fflush(stdout);
  return server.Run();
}
