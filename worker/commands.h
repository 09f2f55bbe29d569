// The daemon's commands, as data: one CommandSpec row per command (name,
// arity, flags, key positions, handler), looked up case-insensitively
// without copying the name. Adding a command is one row and one function.
#pragma once

#include <redhub/server.h>

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cycle_clock.h"
#include "version.h"

namespace redhub::shm {
class Store;
class CounterArea;
class CounterBlock;
}  // namespace redhub::shm

namespace redhub::worker {

class EventLoop;
class CommandService;

struct CommandContext {
  Conn& conn;
  std::span<const std::string_view> args;
  resp::Writer& w;
  CommandService& service;
};

enum CommandFlag : uint32_t {
  kWrite = 1 << 0,
  kReadOnly = 1 << 1,
  kFast = 1 << 2,
  kLoading = 1 << 3,  // allowed while the store loads
  kNoScript = 1 << 4,
};

// Conn::session_flags() bits of the daemon's command layer.
enum SessionFlag : uint32_t {
  // After MULTI, until EXEC or DISCARD: transactions are not supported yet,
  // so every command in between is refused unrun (CommandService::Dispatch).
  kSessionInMulti = 1 << 0,
};

struct CommandSpec {
  const char* name;  // lower case, as Redis names commands
  int arity;         // Redis's convention: -N means at least N arguments
  uint32_t flags;
  int first_key, last_key, key_step;
  Action (*handler)(CommandContext& ctx);
};

// Identity and settings the commands report (INFO, HELLO, CONFIG GET).
struct ServiceInfo {
  std::string version = kVersion;
  std::string bind;
  uint16_t port = 0;
  int worker_slot = 0;
  int master_pid = 0;  // 0 outside redhubd: INFO's CPU is then this process's
  std::string config_file;
  std::string executable;
};

// The command families; the table is their concatenation. Each family lives
// in its own file: commands.cc (connection and server), string_commands.cc,
// keyspace_commands.cc (keys and expiry).
std::span<const CommandSpec> ServerCommands();
std::span<const CommandSpec> StringCommands();
std::span<const CommandSpec> KeyspaceCommands();

// Counters of this worker that INFO reports next to the event loop's.
struct CommandStats {
  uint64_t keyspace_hits = 0;
  uint64_t keyspace_misses = 0;
};

// Runs the command table for one worker's event loop over the shared store.
class CommandService {
 public:
  // store: the shared-memory store every worker serves (the master created
  // it before forking); it must outlive the service.
  CommandService(ServiceInfo info, shm::Store* store);

  // The handlers to give the event loop.
  Handlers MakeHandlers();
  const ServiceInfo& info() const { return info_; }

  // nullptr for an unknown command.
  static const CommandSpec* Lookup(std::string_view name);
  static const std::vector<CommandSpec>& Table();

  Action Dispatch(Conn& conn, const resp::Command& cmd, resp::Writer& w);

  shm::Store& store() { return *store_; }
  CommandStats stats;

  // The daemon's counter blocks (shm/counters.h): this worker writes its
  // own block; INFO sums all of them. Without them (an embedded service)
  // INFO reports this process only.
  void set_counters(shm::CounterArea* area, shm::CounterBlock* block) {
    area_ = area;
    block_ = block;
  }
  // Copies the event loop's figures into this worker's block (per-command
  // figures are written as commands run). Called every tick and before INFO.
  void PublishLoopStats();
  shm::CounterArea* counter_area() const { return area_; }
  // Every slot of shm/worker_counters.h summed over all workers (this
  // worker's own figures first published).
  std::vector<uint64_t> Totals();
  // The master labels the per-command slots with the table's names.
  static void LabelCounters(shm::CounterArea* area);

 private:
  // Inside MULTI: refuses the command unrun (true) unless it is one that
  // ends or exits the state (EXEC, DISCARD, QUIT) or MULTI itself.
  bool RefuseInMulti(std::span<const std::string_view> args, resp::Writer& w);
  // Counts an error reply (the text after '-') by its first word.
  void CountError(std::string_view reply);
  void LogSlow(Conn& conn, std::span<const std::string_view> args, int64_t micros);

 public:
  double started_at = 0;

 private:
  ServiceInfo info_;
  const ServerView* server_ = nullptr;  // Handlers::on_start
  shm::Store* store_;
  shm::CounterArea* area_ = nullptr;
  shm::CounterBlock* block_ = nullptr;
  CycleClock clock_;
  uint64_t clock_mark_ = 0;        // when the last command ended
  uint64_t clock_batch_ = 0;       // in which of the loop's batches
  const CommandSpec* table_;       // Table().data()
  const CommandSpec* lookup_get_;  // GET's row
  // Look-ahead prefetching of GET pipelines (PrefetchBatch), chosen by
  // measurement (ChoosePrefetch).
  bool PrefetchBatch(std::string_view requests);
  void ChoosePrefetch();
  resp::Parser lookahead_;
  bool prefetch_ = false;        // for the current batch
  bool prefetch_best_ = false;   // the better setting in the last window
  bool batch_reads_ = false;     // the current batch is a GET pipeline
  uint32_t window_batches_ = 0;  // GET pipelines in this window
  uint64_t batch_ticks_ = 0;     // this batch: command time, and the prefetch pass
  uint32_t batch_cmds_ = 0;
  uint64_t ticks_[2] = {0, 0};  // this window, by setting (0 off, 1 on)
  uint64_t cmds_[2] = {0, 0};
  // The last command name looked up, as received, and its row.
  char last_name_[24];
  size_t last_name_len_ = 0;
  const CommandSpec* last_spec_ = nullptr;
};

}  // namespace redhub::worker
