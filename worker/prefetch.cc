#include "prefetch.h"

#include "command_table.h"
#include "store.h"

namespace redhub::worker {

GetPrefetcher::GetPrefetcher(shm::Store* store, const CycleClock* clock)
    : store_(store), clock_(clock) {}

void GetPrefetcher::BeginBatch(std::string_view requests) {
  // A few requests (no pipelining) have nothing to overlap.
  batch_reads_ = false;
  if (requests.size() < 512) return;
  uint64_t t0 = clock_->Now();
  batch_reads_ = PrefetchBatch(requests);
  batch_ticks_ += clock_->Now() - t0;
}

// Only batches that start with GET (first request), and only multibulk
// requests (their arguments are views into `requests`): writes would
// prefetch lines other workers are writing. Returns whether the batch is
// such a GET pipeline; prefetches only if prefetch_ says so.
bool GetPrefetcher::PrefetchBatch(std::string_view requests) {
  constexpr size_t kMaxAhead = 512;
  static const CommandSpec* const get = LookupCommand("get");
  std::string_view keys[kMaxAhead];
  size_t n = 0;
  size_t off = 0;
  lookahead_.Reset();
  while (n < kMaxAhead && off < requests.size()) {
    resp::Command cmd;
    size_t used = 0;
    if (lookahead_.Parse(requests.data() + off, requests.size() - off, &cmd, &used) !=
            resp::ParseStatus::kComplete ||
        cmd.kind != resp::Kind::kMultibulk || cmd.args.size() != 2 ||
        LookupCommand(cmd.args[0]) != get) {
      break;
    }
    if (!prefetch_) {
      n = 1;  // a GET pipeline: measure it without prefetching
      break;
    }
    keys[n++] = cmd.args[1];
    off += used;
  }
  lookahead_.Reset();
  if (!prefetch_) return n != 0;
  for (size_t i = 0; i < n; i++) store_->Prefetch(keys[i], 0);
  for (size_t i = 0; i < n; i++) store_->Prefetch(keys[i], 1);
  return n != 0;
}

// Prefetching pays when lookups miss the cache (random keys over a large
// store) and costs a second parse of each request when they hit (one hot
// key). Which one a load is can change at any time, so it is measured: in
// each window of 64 GET pipelines, 2 run with the other setting (exploring
// costs ~3% of the loser's overhead), and the setting with the lower time
// per command (the prefetch pass included) is kept for the next window.
void GetPrefetcher::EndBatch() {
  constexpr uint32_t kWindow = 64, kTrial = 2, kMinCommands = 16;
  if (batch_reads_ && batch_cmds_ >= kMinCommands) {
    ticks_[prefetch_] += batch_ticks_;
    cmds_[prefetch_] += batch_cmds_;
    if (++window_batches_ == kWindow) {
      if (cmds_[0] != 0 && cmds_[1] != 0) {
        // ticks_[1] / cmds_[1] < ticks_[0] / cmds_[0], without division.
        prefetch_best_ = static_cast<unsigned __int128>(ticks_[1]) * cmds_[0] <
                         static_cast<unsigned __int128>(ticks_[0]) * cmds_[1];
      }
      window_batches_ = 0;
      ticks_[0] = ticks_[1] = cmds_[0] = cmds_[1] = 0;
    }
  }
  batch_ticks_ = 0;
  batch_cmds_ = 0;
  prefetch_ = window_batches_ < kTrial ? !prefetch_best_ : prefetch_best_;
}

}  // namespace redhub::worker
