#include "worker_process.h"

#include <sys/prctl.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>

#include "channel.h"
#include "counters.h"
#include "event_loop.h"
#include "log.h"
#include "proctitle.h"
#include "progress.h"
#include "store.h"
#include "worker_counters.h"

namespace redhub::worker {
namespace {

enum LiveTag : uint16_t {
  kMaxClients = 1,
  kIdleTimeout,
  kQueryLimit,
  kBulkLimit,
  kSoftLimit,
  kHardLimit,
  kKeepalive,
  kLogLevel,
  kConfigParameter,  // one per parameter: nested fields kParameterName, kParameterValue
};

enum ParameterTag : uint16_t {
  kParameterName = 1,
  kParameterValue,
};

struct WorkerState {
  const WorkerSpec* spec;
  EventLoop* loop;
  CommandService* service;
  ev_io control;
  ev_timer heartbeat;
};

void OnControl(struct ev_loop* loop, ev_io* w, int) {
  auto* st = static_cast<WorkerState*>(w->data);
  while (true) {
    Message m;
    int err = ReceiveMessage(w->fd, &m);
    if (err == EAGAIN) return;
    if (err != 0) {
      // The master is gone (PR_SET_PDEATHSIG normally got here first).
      LOG_WARNING("Control channel to the master closed; shutting down");
      ev_io_stop(loop, w);
      st->loop->Stop();
      return;
    }
    switch (m.type) {
      case MessageType::kRetire:
        if (m.fd < 0) break;
        LOG_NOTICE("Retiring: handing connections to the new worker of slot %d", st->spec->slot);
        SetProcTitle("redhubd: worker " + std::to_string(st->spec->slot) + " (retiring)");
        st->loop->Retire(m.fd);
        m.fd = -1;
        break;
      case MessageType::kReopenLog:
        if (std::string e = log::Reopen(); !e.empty()) LOG_WARNING("%s", e.c_str());
        break;
      case MessageType::kConfig: {
        Options o = st->loop->options();
        int level = static_cast<int>(log::GetLevel());
        ConfigParameterList parameters = st->service->info().config_parameters;
        DecodeLiveConfig(m.payload, &o, &level, &parameters);
        st->loop->set_options(o);
        st->service->set_config_parameters(std::move(parameters));
        log::SetLevel(static_cast<log::Level>(level));
        LOG_VERBOSE("Live settings updated");
        break;
      }
      default:
        break;
    }
    if (m.fd >= 0) close(m.fd);
  }
}

void OnHeartbeat(struct ev_loop*, ev_timer* w, int) {
  auto* st = static_cast<WorkerState*>(w->data);
  SendMessage(st->control.fd, MessageType::kHeartbeat, {});
}

}  // namespace

std::string EncodeLiveConfig(const Options& o, int log_level,
                             const ConfigParameterList& parameters) {
  FieldWriter f;
  f.PutU64(kMaxClients, o.max_clients);
  f.PutU64(kIdleTimeout, static_cast<uint64_t>(o.idle_timeout.count()));
  f.PutU64(kQueryLimit, o.max_query_buffer);
  f.PutU64(kBulkLimit, o.max_bulk_len);
  f.PutU64(kSoftLimit, o.output_buffer_soft_limit);
  f.PutU64(kHardLimit, o.output_buffer_hard_limit);
  f.PutU64(kKeepalive, static_cast<uint64_t>(o.tcp_keepalive.count()));
  f.PutU64(kLogLevel, static_cast<uint64_t>(log_level));
  for (const auto& [name, value] : parameters) {
    FieldWriter p;
    p.Put(kParameterName, name);
    p.Put(kParameterValue, value);
    f.Put(kConfigParameter, p.data());
  }
  return std::move(f.data());
}

void DecodeLiveConfig(std::string_view payload, Options* o, int* log_level,
                      ConfigParameterList* parameters) {
  FieldReader r(payload);
  uint16_t tag;
  std::string_view v;
  bool first_parameter = true;
  while (r.Next(&tag, &v)) {
    uint64_t n = FieldReader::U64(v);
    switch (tag) {
      case kConfigParameter: {
        if (parameters == nullptr) break;
        // The payload's list replaces the old one as a whole.
        if (first_parameter) parameters->clear();
        first_parameter = false;
        FieldReader p(v);
        uint16_t ptag;
        std::string_view pv;
        std::pair<std::string, std::string> entry;
        while (p.Next(&ptag, &pv)) {
          if (ptag == kParameterName) entry.first = pv;
          if (ptag == kParameterValue) entry.second = pv;
        }
        parameters->push_back(std::move(entry));
        break;
      }
      case kMaxClients:
        o->max_clients = n;
        break;
      case kIdleTimeout:
        o->idle_timeout = std::chrono::seconds(n);
        break;
      case kQueryLimit:
        o->max_query_buffer = n;
        break;
      case kBulkLimit:
        o->max_bulk_len = n;
        break;
      case kSoftLimit:
        o->output_buffer_soft_limit = n;
        break;
      case kHardLimit:
        o->output_buffer_hard_limit = n;
        break;
      case kKeepalive:
        o->tcp_keepalive = std::chrono::seconds(n);
        break;
      case kLogLevel:
        *log_level = static_cast<int>(n);
        break;
      default:
        break;
    }
  }
}

int RunWorker(const WorkerSpec& spec) {
  // Never outlive the master: a worker without it would serve a slot no one
  // supervises. Checking getppid() closes the race with a master that died
  // before prctl.
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  log::SetRole('W');
  SetProcTitle("redhubd: worker " + std::to_string(spec.slot));
  for (int fd : spec.close_fds) close(fd);

  // The master's signal handlers and mask came with fork(); the worker
  // answers only SIGTERM/SIGINT (graceful stop) itself.
  sigset_t all;
  sigemptyset(&all);
  sigprocmask(SIG_SETMASK, &all, nullptr);
  for (int sig : {SIGCHLD, SIGTERM, SIGINT, SIGQUIT}) signal(sig, SIG_DFL);
  for (int sig : {SIGHUP, SIGUSR1, SIGUSR2, SIGPIPE}) signal(sig, SIG_IGN);

  Options options = spec.options;
  options.handle_signals = true;
  ServiceInfo info = spec.info;
  info.worker_slot = spec.slot;
  info.master_pid = spec.master_pid;
  CommandService service(info, spec.store);
  // Repairs after a dead process, one line each; the store calls this with
  // no stripe locked, so a slow log write blocks only this worker.
  if (spec.store != nullptr) {
    spec.store->SetEventSink([](std::string_view line) {
      LOG_WARNING("%.*s", static_cast<int>(line.size()), line.data());
    });
  }
  // This worker's counter block; a clean exit folds it at once, a crash is
  // folded by the next reader.
  shm::CounterBlock* block = spec.counters ? spec.counters->Claim(getpid()) : nullptr;
  if (spec.counters != nullptr && block == nullptr) {
    LOG_WARNING("No free counter block: INFO and metrics will miss this worker's figures");
  }
  service.set_counters(spec.counters, block);
  service.set_acl_area(spec.acl);
  service.set_script_area(spec.scripts);
  // The watchdog's second sign of life: long commands and lock waits bump it.
  if (block != nullptr) shm::SetProgressWord(block->Word(shm::slots::kProgress));
  EventLoop loop(options, service.MakeHandlers());
  // maxclients counts every worker's clients, through the counter blocks.
  if (block != nullptr) loop.set_shared_clients(spec.counters, block);
  loop.set_id_base(spec.seq << 32);
  loop.set_drain_timeout(spec.drain_timeout);
  for (int fd : spec.listen_fds) loop.AddListener(fd);
  if (spec.tls_ctx != nullptr) {
    for (int fd : spec.tls_listen_fds) loop.AddListener(fd, spec.tls_ctx);
  }
  loop.set_tls_handshake_timeout(spec.tls_handshake_timeout);
  if (spec.adopt_fd >= 0) loop.AdoptFrom(spec.adopt_fd);

  WorkerState st{&spec, &loop, &service, {}, {}};
  ev_io_init(&st.control, OnControl, spec.control_fd, EV_READ);
  st.control.data = &st;
  ev_io_start(loop.loop(), &st.control);
  ev_unref(loop.loop());
  ev_timer_init(&st.heartbeat, OnHeartbeat, spec.heartbeat_interval, spec.heartbeat_interval);
  st.heartbeat.data = &st;
  ev_timer_start(loop.loop(), &st.heartbeat);
  ev_unref(loop.loop());

  if (getppid() != spec.master_pid) return 1;  // the master died before PR_SET_PDEATHSIG
  SendMessage(spec.control_fd, MessageType::kReady, {});
  LOG_VERBOSE("Worker %d ready", spec.slot);
  loop.Run();
  LOG_VERBOSE("Worker %d exiting", spec.slot);
  service.PublishLoopStats();
  shm::SetProgressWord(nullptr);
  if (block != nullptr) spec.counters->Release(block);
  return 0;
}

}  // namespace redhub::worker
