// A multi-key Txn's staged writes, kept in this process until the Txn ends
// (Store::Txn::Staging, PendingOp): txn_staging.cc stages and commits them,
// txn_ops.cc reads them (a Txn sees its own writes). Internal to shm/.
#pragma once

#include <cstdint>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "store.h"

namespace redhub::shm {

// A multi-key Txn's staged writes: at most one per key (a later write to the
// same key replaces the earlier one), and per stripe room in a redo log
// reserved as writes are staged, so that committing never allocates.
struct Store::Txn::PendingOp {
  uint32_t stripe;
  uint32_t kind;  // TxnOpKind
  uint64_t hash;
  std::string_view key;  // in `entry`'s bytes
  uint64_t entry;        // put: the staged entry; erase, expire: the key's entry
  uint64_t base;         // put: the key's entry when it was first written (0 = none)
  int64_t expire;        // expire: the new expire time
};

// A staged op taken back inside a savepoint: kept in place (moving ops
// would break the savepoint's positions), left out of lookups and the
// commit.
inline constexpr uint32_t kTxnOpNone = 0;

// What a borrowed Txn (Store::Scope) changed in its scope's staging, so that
// its Abort can restore it: ops from `ops` on are its own; earlier ones it
// changed are saved before their first change (`saved`, restored in reverse
// order), as are the expire times of staged entries it rewrote in place;
// staged entries it replaced are freed only when it ends without Abort.
struct Store::Txn::Savepoint {
  bool active = false;
  size_t ops = 0;
  std::vector<std::pair<uint32_t, PendingOp>> saved;
  std::vector<std::pair<uint64_t, int64_t>> expires;    // staged entry, its expire before
  std::vector<std::pair<uint32_t, uint64_t>> replaced;  // stripe, staged entry
  void Clear() {
    active = false;
    saved.clear();
    expires.clear();
    replaced.clear();
  }
};

struct Store::Txn::Staging {
  struct Log {
    uint32_t stripe;
    uint32_t capacity;  // ops the log holds
    uint32_t reserved;  // ops staged on this stripe
    uint64_t chunk;     // 0: the log is inline in the stripe header
  };
  std::vector<PendingOp> ops;
  std::vector<Log> logs;

  // Lookups by key and by stripe. A linear search per key made MSET of n
  // pairs O(n^2): 200k pairs kept a worker busy until the watchdog killed
  // it. Small Txns (RENAME, MSET of a few keys) search the vectors; past
  // kIndexFrom ops a hash index takes over.
  static constexpr size_t kIndexFrom = 16;
  bool indexed = false;
  std::unordered_multimap<uint64_t, uint32_t> by_hash;  // hash -> position in ops
  std::vector<uint32_t> log_of;                         // stripe -> position in logs + 1 (0: none)

  PendingOp* Find(uint64_t hash, std::string_view key) {
    if (indexed) {
      auto [it, end] = by_hash.equal_range(hash);
      for (; it != end; ++it) {
        PendingOp& op = ops[it->second];
        if (op.kind != kTxnOpNone && op.key == key) return &op;
      }
      return nullptr;
    }
    for (PendingOp& op : ops) {
      if (op.hash == hash && op.kind != kTxnOpNone && op.key == key) return &op;
    }
    return nullptr;
  }
  void Add(const PendingOp& op) {
    ops.push_back(op);
    if (indexed) {
      by_hash.emplace(op.hash, static_cast<uint32_t>(ops.size() - 1));
    } else if (ops.size() >= kIndexFrom) {
      by_hash.reserve(ops.size() * 2);
      for (size_t i = 0; i < ops.size(); i++) by_hash.emplace(ops[i].hash, i);
      indexed = true;
    }
  }
  // Removes ops[i], moving the last op into its place.
  void Remove(PendingOp* op) {
    const auto i = static_cast<uint32_t>(op - ops.data());
    const auto last = static_cast<uint32_t>(ops.size() - 1);
    if (indexed) {
      Unindex(ops[i].hash, i);
      if (i != last) {
        Unindex(ops[last].hash, last);
        by_hash.emplace(ops[last].hash, i);
      }
    }
    ops[i] = ops[last];
    ops.pop_back();
  }
  void Unindex(uint64_t hash, uint32_t pos) {
    auto [it, end] = by_hash.equal_range(hash);
    for (; it != end; ++it) {
      if (it->second == pos) {
        by_hash.erase(it);
        return;
      }
    }
  }
  Log* LogOf(uint32_t stripe) {
    return stripe < log_of.size() && log_of[stripe] != 0 ? &logs[log_of[stripe] - 1] : nullptr;
  }
  Log* AddLog(uint32_t stripe, uint32_t capacity) {
    if (stripe >= log_of.size()) log_of.resize(stripe + 1, 0);
    logs.push_back(Log{stripe, capacity, 0, 0});
    log_of[stripe] = static_cast<uint32_t>(logs.size());
    return &logs.back();
  }
  // Empty for reuse, keeping the capacity (SpareStaging).
  void Clear() {
    for (const Log& l : logs) log_of[l.stripe] = 0;
    ops.clear();
    logs.clear();
    by_hash.clear();
    indexed = false;
  }
};

}  // namespace redhub::shm
