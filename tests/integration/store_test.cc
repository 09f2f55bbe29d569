// The shared store seen through the real daemon: one key space across all
// workers, and no acknowledged write lost while workers are SIGKILLed at
// random under write load; afterwards the segment passes the store's full
// consistency check (Store::Audit, attached the way a worker attaches).
#include "store.h"

#include <dirent.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "server_process.h"

namespace redhub::integration {
namespace {

// The daemon's worker processes: the children of its master.
std::vector<pid_t> WorkerPids(pid_t master) {
  std::vector<pid_t> pids;
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return pids;
  while (dirent* d = readdir(proc)) {
    char* end;
    long pid = strtol(d->d_name, &end, 10);
    if (*end != '\0' || pid <= 0) continue;
    std::ifstream stat("/proc/" + std::string(d->d_name) + "/stat");
    std::string line;
    if (!std::getline(stat, line)) continue;
    size_t paren = line.rfind(')');
    if (paren == std::string::npos) continue;
    std::istringstream rest(line.substr(paren + 2));
    char state;
    long ppid;
    rest >> state >> ppid;
    if (ppid == master && state != 'Z') pids.push_back(static_cast<pid_t>(pid));
  }
  closedir(proc);
  return pids;
}

// "worker=N" of CLIENT INFO: which worker slot serves this connection.
int WorkerSlot(redisContext* c) {
  Reply r = Command(c, {"CLIENT", "INFO"});
  if (!r || r->type != REDIS_REPLY_STRING) return -1;
  std::string info(r->str, r->len);
  size_t at = info.find(" worker=");
  return at == std::string::npos ? -1 : atoi(info.c_str() + at + 8);
}

std::string ShmName(uint16_t port) {
  return "/redhub-it-" + std::to_string(getpid()) + "-" + std::to_string(port);
}

// Removes a segment kept with --shm-keep however the test ends.
struct SegmentGuard {
  std::string name;
  ~SegmentGuard() { shm::Store::Remove(name); }
};

TEST(StoreTest, AKeyWrittenOnOneConnectionIsReadOnFiftyOthersOnEveryWorker) {
  uint16_t probe = PickFreePort();
  auto server =
      StartRedhubd({"--workers", "2", "--maxmemory", "16mb", "--shm-name", ShmName(probe)});
  ASSERT_NE(server, nullptr);
  Context writer = ConnectHiredis(server->port());
  ASSERT_NE(writer, nullptr);
  ASSERT_EQ(DescribeReply(Command(writer.get(), {"SET", "shared", "across workers"}).get()), "+OK");

  std::set<int> slots;
  std::vector<Context> readers;
  for (int i = 0; i < 50; i++) {
    Context c = ConnectHiredis(server->port());
    ASSERT_NE(c, nullptr);
    slots.insert(WorkerSlot(c.get()));
    Reply r = Command(c.get(), {"GET", "shared"});
    ASSERT_NE(r, nullptr);
    ASSERT_EQ(r->type, REDIS_REPLY_STRING) << "reader " << i << ": " << DescribeReply(r.get());
    EXPECT_EQ(std::string(r->str, r->len), "across workers") << "reader " << i;
    readers.push_back(std::move(c));  // keep it open so the next one may land elsewhere
  }
  // The kernel spreads connections over both SO_REUSEPORT listeners; 50
  // connections all landing on one of two is a 2^-49 event.
  EXPECT_EQ(slots, (std::set<int>{0, 1}));

  // A change through a reader is seen by the writer, whatever its worker.
  ASSERT_EQ(DescribeReply(Command(readers[17].get(), {"SET", "shared", "changed"}).get()), "+OK");
  EXPECT_EQ(DescribeReply(Command(writer.get(), {"GET", "shared"}).get()), "$7 changed");
  EXPECT_EQ(DescribeReply(Command(readers[42].get(), {"DBSIZE"}).get()), ":1");
}

// Two workers pipelining writes to one hot key: each worker's batch keeps
// the key's stripe locked across its commands and hands it over at the
// batch's end (Store::BeginBatch). Every INCR must still count once, each
// connection must see its own INCRs rise, GETs of the key (unlocked reads
// that find the stripe held go to the lock) must see a number, and writes
// to other keys in the same batches must land.
TEST(StoreTest, PipelinedIncrsOfOneKeyFromBothWorkersAllCount) {
  uint16_t probe = PickFreePort();
  auto server =
      StartRedhubd({"--workers", "2", "--maxmemory", "16mb", "--shm-name", ShmName(probe)});
  ASSERT_NE(server, nullptr);
  // Two connections on each worker.
  std::vector<Context> conns;
  std::map<int, int> per_slot;
  for (int i = 0; i < 200 && conns.size() < 4; i++) {
    Context c = ConnectHiredis(server->port());
    ASSERT_NE(c, nullptr);
    int slot = WorkerSlot(c.get());
    if (per_slot[slot] < 2) {
      per_slot[slot]++;
      conns.push_back(std::move(c));
    }
  }
  ASSERT_EQ(conns.size(), 4u) << "could not get two connections on each worker";

  constexpr int kBatches = 40, kPerBatch = 250;  // 10000 INCRs per connection
  std::vector<std::string> errors(conns.size());
  std::vector<std::thread> threads;
  for (size_t t = 0; t < conns.size(); t++) {
    threads.emplace_back([&, t] {
      redisContext* c = conns[t].get();
      long long last = 0;
      const std::string own = "own:" + std::to_string(t);
      for (int b = 0; b < kBatches && errors[t].empty(); b++) {
        // INCR hot, GET hot, SET own:t n, INCR hot, ... in one pipeline.
        for (int i = 0; i < kPerBatch; i++) {
          redisAppendCommand(c, "INCR hot");
          if (i % 10 == 0) redisAppendCommand(c, "GET hot");
          if (i % 25 == 0) redisAppendCommand(c, "SET %s %d", own.c_str(), b * kPerBatch + i);
        }
        for (int i = 0; i < kPerBatch && errors[t].empty(); i++) {
          redisReply* r = nullptr;
          if (redisGetReply(c, reinterpret_cast<void**>(&r)) != REDIS_OK) {
            errors[t] = std::string("connection error: ") + c->errstr;
            break;
          }
          Reply incr(r);
          if (incr->type != REDIS_REPLY_INTEGER || incr->integer <= last) {
            errors[t] =
                "INCR replied " + DescribeReply(incr.get()) + " after " + std::to_string(last);
            break;
          }
          last = incr->integer;
          if (i % 10 == 0) {
            if (redisGetReply(c, reinterpret_cast<void**>(&r)) != REDIS_OK) break;
            Reply get(r);
            if (get->type != REDIS_REPLY_STRING || atoll(get->str) < last) {
              errors[t] = "GET hot replied " + DescribeReply(get.get()) + " after INCR " +
                          std::to_string(last);
            }
          }
          if (i % 25 == 0) {
            if (redisGetReply(c, reinterpret_cast<void**>(&r)) != REDIS_OK) break;
            Reply set(r);
            if (DescribeReply(set.get()) != "+OK")
              errors[t] = "SET replied " + DescribeReply(set.get());
          }
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  for (size_t t = 0; t < errors.size(); t++) EXPECT_EQ(errors[t], "") << "connection " << t;
  const long long total = static_cast<long long>(conns.size()) * kBatches * kPerBatch;
  EXPECT_EQ(DescribeReply(Command(conns[0].get(), {"GET", "hot"}).get()),
            "$" + std::to_string(std::to_string(total).size()) + " " + std::to_string(total));
  for (size_t t = 0; t < conns.size(); t++) {
    std::string want = std::to_string((kBatches - 1) * kPerBatch + kPerBatch - 25);
    EXPECT_EQ(DescribeReply(Command(conns[1].get(), {"GET", "own:" + std::to_string(t)}).get()),
              "$" + std::to_string(want.size()) + " " + want);
  }
}

// Long GET pipelines over many keys: the worker parses them ahead and
// prefetches their keys when that measures faster (CommandService::
// PrefetchBatch), switching it on and off as it measures. Every reply must
// be the key's own value either way.
TEST(StoreTest, LongGetPipelinesReadEveryKeysOwnValue) {
  uint16_t probe = PickFreePort();
  auto server =
      StartRedhubd({"--workers", "2", "--maxmemory", "64mb", "--shm-name", ShmName(probe)});
  ASSERT_NE(server, nullptr);
  Context c = ConnectHiredis(server->port());
  ASSERT_NE(c, nullptr);
  constexpr int kKeys = 20000;
  for (int i = 0; i < kKeys; i++) redisAppendCommand(c.get(), "SET k:%d v:%d", i, i * 7);
  for (int i = 0; i < kKeys; i++) {
    redisReply* r = nullptr;
    ASSERT_EQ(redisGetReply(c.get(), reinterpret_cast<void**>(&r)), REDIS_OK) << c->errstr;
    Reply(r).reset();
  }
  // 200 pipelines of 1000 GETs in a shuffled order, some keys missing.
  std::mt19937 rng(1);
  for (int round = 0; round < 200; round++) {
    std::vector<int> ids(1000);
    for (int& id : ids) id = static_cast<int>(rng() % (kKeys + 500));
    for (int id : ids) redisAppendCommand(c.get(), "GET k:%d", id);
    for (int id : ids) {
      redisReply* r = nullptr;
      ASSERT_EQ(redisGetReply(c.get(), reinterpret_cast<void**>(&r)), REDIS_OK) << c->errstr;
      Reply reply(r);
      std::string want = id < kKeys ? "$" + std::to_string(("v:" + std::to_string(id * 7)).size()) +
                                          " v:" + std::to_string(id * 7)
                                    : "(nil)";
      ASSERT_EQ(DescribeReply(reply.get()), want) << "round " << round << ", k:" << id;
    }
  }
}

// Under allkeys-lru a full store makes room: writes far beyond maxmemory
// all succeed, old keys are evicted (counted in INFO), memory stays under
// the limit, and the daemon keeps serving. (Which keys go is approximate
// LRU with a 1 s clock, as in Redis, so a sub-second test cannot ask for
// a particular survivor.)
TEST(StoreTest, AllKeysLruEvictsInsteadOfRefusingWrites) {
  auto server =
      StartRedhubd({"--workers", "2", "--maxmemory", "2mb", "--maxmemory-policy", "allkeys-lru"});
  ASSERT_NE(server, nullptr);
  Context c = ConnectHiredis(server->port());
  ASSERT_NE(c, nullptr);
  const std::string value(1000, 'v');
  for (int i = 0; i < 10000; i++) {  // ~10 MB into 2 MB
    Reply r = Command(c.get(), {"SET", "k" + std::to_string(i), value});
    ASSERT_NE(r, nullptr) << i;
    ASSERT_EQ(DescribeReply(r.get()), "+OK") << "write " << i;
  }
  std::optional<int64_t> evicted = InfoInt(c.get(), "stats", "evicted_keys");
  std::optional<int64_t> used = InfoInt(c.get(), "memory", "used_memory");
  Reply dbsize = Command(c.get(), {"DBSIZE"});
  ASSERT_NE(dbsize, nullptr);
  ASSERT_TRUE(evicted && used);
  EXPECT_GT(*evicted, 5000);
  EXPECT_LE(*used, 2 << 20);
  EXPECT_EQ(dbsize->integer + *evicted, 10000);
  // The newest key was written last, after every eviction it caused.
  EXPECT_EQ(DescribeReply(Command(c.get(), {"GET", "k9999"}).get()).substr(0, 5), "$1000");
  EXPECT_EQ(DescribeReply(Command(c.get(), {"PING"}).get()), "+PONG");
}

// What a client knows of one key it alone writes: the value of its last
// acknowledged write, and the values of writes after that one whose reply
// was lost with their worker (done or not, each is newer than the ack). A
// reply lost to a timeout (a live worker that may still run the command,
// after later writes on a new connection) would leave the order unknown:
// its value stays acceptable for good, and such losses are counted.
struct KeyModel {
  std::optional<std::string> acked;
  std::vector<std::string> after_ack;  // lost with a dead worker, newer than acked
  std::vector<std::string> any_time;   // lost to a timeout
  bool Accepts(const std::optional<std::string>& got) const {
    if (got == acked) return true;
    if (!got) return false;  // an acknowledged write vanished
    return std::find(after_ack.begin(), after_ack.end(), *got) != after_ack.end() ||
           std::find(any_time.begin(), any_time.end(), *got) != any_time.end();
  }
};

// How a reply was lost: the connection closed (its worker died, so the
// command ran before the death or never) or anything else (a timeout).
bool LostWithItsWorker(const redisContext* c) {
  return c->err == REDIS_ERR_EOF ||
         (c->err == REDIS_ERR_IO && (errno == ECONNRESET || strstr(c->errstr, "reset")));
}

// The daemon's log after a run of redhubd_crashtest: which crash point each
// worker was armed with, and which of them died of SIGKILL.
std::map<std::string, int> CrashPointDeaths(const std::string& log, const std::set<pid_t>& killed) {
  std::map<pid_t, std::string> armed;
  std::istringstream in(log);
  std::string line;
  std::set<pid_t> died;
  while (std::getline(in, line)) {
    int pid = 0;
    char name[64];
    if (sscanf(line.c_str(), "redhubd_crashtest: pid %d armed %63s", &pid, name) == 2) {
      armed[pid] = name;
    }
    size_t at = line.find("(pid ");
    if (at != std::string::npos && line.find(") killed by signal 9", at) != std::string::npos) {
      died.insert(atoi(line.c_str() + at + 5));
    }
  }
  std::map<std::string, int> deaths;
  for (pid_t pid : died) {
    if (killed.count(pid) == 0 && armed.count(pid) != 0) deaths[armed[pid]]++;
  }
  return deaths;
}

// Clients write as fast as they can, single SETs, pipelined SETs (a batch
// keeps a stripe locked across them), MSETs of three keys (multi-key Txns)
// and volatile filler values that keep the store at maxmemory (evictions),
// while workers die: each worker of redhubd_crashtest kills itself inside a
// critical window of the store (REDHUB_CRASH_POINT: a rehash move, a write
// published inside a batch, a multi-key commit and its apply, an eviction),
// and the test SIGKILLs one at random every 300 ms besides. A client whose
// worker dies reconnects and goes on. Afterwards every key holds its last
// acknowledged value or a newer one whose reply was lost, every MSET is all
// there or not at all, stripes were repaired, and the store is consistent.
TEST(StoreTest, NoAcknowledgedWriteIsLostWhileWorkersAreKilled) {
  uint16_t probe = PickFreePort();
  const std::string shm_name = ShmName(probe);
  SegmentGuard guard{shm_name};
  StartOptions start;
  start.binary = REDHUBD_CRASHTEST_PATH;
  // Round robin over the processes the master forks, each at a random reach
  // up to the number given: a worker lives a few tenths of a second.
  start.env = {
      "REDHUB_CRASH_POINT=rehash-move:400,evict:100,after-publish:3000,txn-committed:200,"
      "rehash-move:400,evict:100,txn-apply:200,before-publish:3000"};
  auto server = StartRedhubd({"--workers", "2", "--maxmemory", "32mb", "--maxmemory-policy",
                              "volatile-lru", "--shm-name", shm_name, "--shm-keep"},
                             start);
  ASSERT_NE(server, nullptr);
  const uint16_t port = server->port();

  constexpr int kSetClients = 3;  // the last one pipelines
  constexpr int kMsetClient = kSetClients, kFiller = kSetClients + 1, kClients = kSetClients + 2;
  constexpr int kPipeline = 8;
  const milliseconds kReplyTimeout{10000};
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::map<std::string, KeyModel> keys;
  // MSET groups: "m:<n>" -> value, acknowledged or not.
  std::map<std::string, std::string> groups_acked, groups_unsure;
  std::map<std::string, int> errors;  // how replies were lost, for the record
  std::atomic<int> timeouts{0}, connect_failures{0}, ooms{0};
  std::atomic<uint64_t> filled{0};
  std::vector<std::thread> clients;
  for (int id = 0; id < kClients; id++) {
    clients.emplace_back([&, id] {
      Context c;
      uint64_t n = 0;
      const std::string filler(16000, 'f');
      while (!stop.load()) {
        if (!c) {
          c = ConnectHiredis(port, kReplyTimeout);
          if (!c) {
            connect_failures++;
            continue;
          }
        }
        // The commands of this round: key (or group), value.
        std::vector<std::pair<std::string, std::string>> sent;
        int depth = id == kSetClients - 1 ? kPipeline : 1;
        for (int i = 0; i < depth; i++, n++) {
          if (id == kFiller) {
            std::string key = "f:" + std::to_string(n);
            redisAppendCommand(c.get(), "SET %s %b EX 3600", key.c_str(), filler.data(),
                               filler.size());
            sent.emplace_back(key, "");
          } else if (id == kMsetClient) {
            std::string group = "m:" + std::to_string(n), value = "g" + std::to_string(n);
            redisAppendCommand(c.get(), "MSET %s:a %s %s:b %s %s:c %s", group.c_str(),
                               value.c_str(), group.c_str(), value.c_str(), group.c_str(),
                               value.c_str());
            sent.emplace_back(group, value);
          } else {
            // Overwrite a key now and then so that replacements are exercised.
            uint64_t k = (n % 5 == 4) ? n - 3 : n;
            std::string key = "c" + std::to_string(id) + ":" + std::to_string(k);
            std::string value = "v" + std::to_string(n) + std::string(n % 64, 'x');
            redisAppendCommand(c.get(), "SET %s %s", key.c_str(), value.c_str());
            sent.emplace_back(key, value);
          }
        }
        bool lost = false, with_worker = false;
        for (const auto& [key, value] : sent) {
          redisReply* raw = nullptr;
          if (!lost && redisGetReply(c.get(), reinterpret_cast<void**>(&raw)) != REDIS_OK) {
            lost = true;
            with_worker = LostWithItsWorker(c.get());
            std::lock_guard<std::mutex> lock(mu);
            errors[c->errstr]++;
            if (!with_worker) timeouts++;
          }
          Reply r(raw);
          std::lock_guard<std::mutex> lock(mu);
          if (id == kFiller) {
            if (!lost && r->type == REDIS_REPLY_STATUS) filled++;
          } else if (lost) {
            if (id == kMsetClient) {
              groups_unsure[key] = value;
            } else {
              (with_worker ? keys[key].after_ack : keys[key].any_time).push_back(value);
            }
          } else if (r->type == REDIS_REPLY_STATUS) {
            if (id == kMsetClient) {
              groups_acked[key] = value;
            } else {
              keys[key].acked = value;
              keys[key].after_ack.clear();
            }
          } else if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "OOM", 3) == 0) {
            ooms++;  // refused: nothing written, the model stays
          } else {
            ADD_FAILURE() << key << ": " << DescribeReply(r.get());
            stop = true;
          }
        }
        if (lost) c.reset();
      }
    });
  }

  std::mt19937 rng(12345);
  std::set<pid_t> killed;  // by the test
  // At least 10 s, then until a worker has died in every critical window
  // below (on a loaded machine fewer workers cycle through the armed
  // points), at most 30 s.
  const char* const kWindows[] = {"rehash-move",   "after-publish", "before-publish",
                                  "txn-committed", "txn-apply",     "evict"};
  auto every_window_hit = [&] {
    std::map<std::string, int> d = CrashPointDeaths(server->Log(), killed);
    for (const char* point : kWindows) {
      if (d[point] < 1) return false;
    }
    return d["rehash-move"] >= 3;
  };
  const auto min_end = Clock::now() + std::chrono::seconds(10);
  const auto max_end = Clock::now() + std::chrono::seconds(30);
  while (Clock::now() < max_end && !stop.load()) {
    std::this_thread::sleep_for(milliseconds(300));  // the kill cadence, not a wait for state
    std::vector<pid_t> workers = WorkerPids(server->pid());
    if (workers.empty()) continue;  // both are being respawned
    pid_t victim = workers[rng() % workers.size()];
    if (kill(victim, SIGKILL) == 0) killed.insert(victim);
    if (Clock::now() >= min_end && every_window_hit()) break;
  }
  stop = true;
  for (auto& t : clients) t.join();

  for (const auto& [what, count] : errors) {
    printf("lost replies: %d x \"%s\"\n", count, what.c_str());
  }
  size_t acked = 0;
  for (const auto& [key, model] : keys) acked += model.acked.has_value();
  printf("random kills: %zu, acknowledged keys: %zu, MSETs: %zu, fillers: %llu, OOM: %d\n",
         killed.size(), acked, groups_acked.size(), static_cast<unsigned long long>(filled.load()),
         ooms.load());
  EXPECT_GE(killed.size(), 5u);
  EXPECT_GT(acked, 1000u) << "the load did not get through";
  EXPECT_GT(groups_acked.size(), 100u);
  EXPECT_EQ(connect_failures.load(), 0) << "a new connection was refused";
  EXPECT_EQ(timeouts.load(), 0) << "replies lost to timeouts (each accepted in any order)";

  // Service continues, and every key holds a value its model accepts:
  // GETs pipelined 1000 at a time. The workers are still armed (a read can
  // finish a rehash or evict nothing, but an expire cycle or a repair can
  // reach a point), so a pipeline whose connection dies is sent again.
  std::vector<std::string> names;
  for (const auto& [key, model] : keys) names.push_back(key);
  for (const auto& groups : {groups_acked, groups_unsure}) {
    for (const auto& [group, value] : groups) {
      for (const char* part : {":a", ":b", ":c"}) names.push_back(group + part);
    }
  }
  std::map<std::string, std::optional<std::string>> read;
  Context reader;
  int rereads = 0;
  for (size_t at = 0; at < names.size();) {
    ASSERT_LT(rereads, 20) << "the reader's connection keeps dying";
    if (!reader) reader = ConnectHiredis(port, kReplyTimeout);
    ASSERT_NE(reader, nullptr);
    size_t until = std::min(names.size(), at + 1000);
    for (size_t i = at; i < until; i++) {
      redisAppendCommand(reader.get(), "GET %s", names[i].c_str());
    }
    bool lost = false;
    for (size_t i = at; i < until && !lost; i++) {
      redisReply* raw = nullptr;
      if (redisGetReply(reader.get(), reinterpret_cast<void**>(&raw)) != REDIS_OK) {
        ASSERT_TRUE(LostWithItsWorker(reader.get())) << reader->errstr;
        lost = true;
        break;
      }
      Reply r(raw);
      ASSERT_TRUE(r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_NIL)
          << names[i] << ": " << DescribeReply(r.get());
      read[names[i]] = r->type == REDIS_REPLY_NIL
                           ? std::nullopt
                           : std::optional<std::string>(std::string(r->str, r->len));
    }
    if (lost) {
      reader.reset();
      rereads++;
      continue;
    }
    at = until;
  }
  int bad = 0;
  for (const auto& [key, model] : keys) {
    if (!model.Accepts(read[key]) && bad++ < 10) {
      ADD_FAILURE() << key << ": acknowledged " << model.acked.value_or("(none)") << ", "
                    << model.after_ack.size() << " newer unsure, read "
                    << read[key].value_or("(nil)");
    }
  }
  for (const auto& [group, value] : groups_acked) {
    for (const char* part : {":a", ":b", ":c"}) {
      if (read[group + part] != value && bad++ < 10) {
        ADD_FAILURE() << "acknowledged MSET " << group << part << ": read "
                      << read[group + part].value_or("(nil)");
      }
    }
  }
  for (const auto& [group, value] : groups_unsure) {
    if (groups_acked.count(group)) continue;
    const auto& a = read[group + ":a"];
    if ((a != value && a.has_value()) || read[group + ":b"] != a || read[group + ":c"] != a) {
      if (bad++ < 10) ADD_FAILURE() << "MSET " << group << " half applied";
    }
  }
  EXPECT_EQ(bad, 0) << "keys not as their clients know them";
  std::optional<int64_t> repairs, evicted;
  ASSERT_TRUE(WaitUntil([&] {
    if (!reader) reader = ConnectHiredis(port, kReplyTimeout);
    if (!reader) return false;
    repairs = InfoInt(reader.get(), "memory", "shm_stripe_repairs");
    evicted = InfoInt(reader.get(), "stats", "evicted_keys");
    if (!repairs || !evicted) reader.reset();
    return repairs && evicted;
  }));
  EXPECT_GT(*evicted, 0) << "the fillers never filled the store";
  reader.reset();
  EXPECT_EQ(server->Stop(), 0);

  // Workers died inside every critical window.
  std::map<std::string, int> deaths = CrashPointDeaths(server->Log(), killed);
  int in_windows = 0;
  for (const auto& [point, count] : deaths) {
    printf("deaths at %s: %d\n", point.c_str(), count);
    in_windows += count;
  }
  printf("stripe repairs: %lld\n", static_cast<long long>(repairs.value_or(-1)));
  for (const char* point : kWindows) {
    EXPECT_GE(deaths[point], 1) << "no worker died at " << point;
  }
  EXPECT_GE(deaths["rehash-move"], 3);
  ASSERT_TRUE(repairs.has_value());
  // Each such death leaves a stripe locked by the dead (it could not have
  // died there on a stripe waiting for repair: its lock repairs first), and
  // the GETs above lock every stripe the dead held.
  EXPECT_GE(*repairs, in_windows) << in_windows << " deaths in critical windows";

  // The kept segment passes the full consistency check.
  std::string error;
  auto store = shm::Store::Attach(shm_name, &error);
  ASSERT_NE(store, nullptr) << error;
  std::vector<std::string> violations = store->Audit();
  EXPECT_TRUE(violations.empty()) << violations.size()
                                  << " violations, first: " << violations.front();
  EXPECT_EQ(store->stats().validation_errors, 0u);
  RecordProperty("random_kills", static_cast<int>(killed.size()));
  RecordProperty("critical_window_deaths", in_windows);
  RecordProperty("acknowledged_keys", static_cast<int>(acked));
  RecordProperty("stripe_repairs", static_cast<int>(repairs.value_or(-1)));
}

}  // namespace
}  // namespace redhub::integration
