// Look-ahead prefetching of GET pipelines, switched on or off by
// measurement. A pipeline of GETs over a large store spends most of its
// time waiting for memory: two dependent misses per key (its bucket, then
// its entry). Parsing the batch ahead and prefetching every key's bucket,
// then every entry, lets those misses overlap (random keys over 1M: 0.49 ->
// 0.42 us of server CPU per GET). Where keys hit the cache (one hot key) the
// look-ahead only costs a second parse, so each window of 64 GET pipelines
// runs 2 with the other setting, and the faster one stays.
//
//   prefetcher.BeginBatch(requests);      // Handlers::on_batch_begin
//   prefetcher.AddCommand(ticks);         // each command's time
//   prefetcher.EndBatch();                // Handlers::on_batch_end
#pragma once

#include <redhub/resp.h>

#include <cstdint>
#include <string_view>

#include "cycle_clock.h"

namespace redhub::shm {
class Store;
}

namespace redhub::worker {

class GetPrefetcher {
 public:
  // store and clock must outlive the prefetcher.
  GetPrefetcher(shm::Store* store, const CycleClock* clock);

  // A batch of requests (one read of a connection) is about to run.
  void BeginBatch(std::string_view requests);
  // A command of the batch took `ticks` of the clock.
  void AddCommand(uint64_t ticks) {
    batch_ticks_ += ticks;
    batch_cmds_++;
  }
  // The batch has run: its time counts for the setting it ran with.
  void EndBatch();

 private:
  bool PrefetchBatch(std::string_view requests);

  shm::Store* store_;
  const CycleClock* clock_;
  resp::Parser lookahead_;
  bool prefetch_ = false;        // for the current batch
  bool prefetch_best_ = false;   // the better setting in the last window
  bool batch_reads_ = false;     // the current batch is a GET pipeline
  uint32_t window_batches_ = 0;  // GET pipelines in this window
  uint64_t batch_ticks_ = 0;     // this batch: command time, and the prefetch pass
  uint32_t batch_cmds_ = 0;
  uint64_t ticks_[2] = {0, 0};  // this window, by setting (0 off, 1 on)
  uint64_t cmds_[2] = {0, 0};
};

}  // namespace redhub::worker
