// SIGHUP: re-read the configuration from the original command line (and its
// --config file), refuse it if it is invalid or changes a setting only a
// restart can (settings.h, Change::kRestart), apply the live settings to the
// master and the running workers, then replace every worker slot by slot.
#include "acl_setup.h"
#include "channel.h"
#include "counters.h"
#include "fd_limit.h"
#include "log.h"
#include "notify.h"
#include "settings.h"
#include "store.h"
#include "store_setup.h"
#include "supervisor.h"
#include "syserr.h"
#include "worker_counters.h"

namespace redhub::master {

worker::ConfigParameterList Supervisor::ReportedConfigParameters() const {
  // With --port 0 the kernel chose the port: CONFIG GET names that one.
  Config shown = config_;
  shown.port = port_;
  return ConfigParameters(shown);
}

void Supervisor::PublishLiveConfig() {
  std::string payload = worker::EncodeLiveConfig(config_.server, static_cast<int>(log::GetLevel()),
                                                 ReportedConfigParameters());
  for (auto& w : workers_) {
    if (int e = SendMessage(w->control_fd, MessageType::kConfig, payload); e != 0) {
      LOG_WARNING("sendmsg(config, worker %d pid %d) failed: %s", w->slot, static_cast<int>(w->pid),
                  ErrnoText(e).c_str());
    }
  }
}

// The master's share of the live settings; the workers' share travels in
// PublishLiveConfig.
void Supervisor::ApplyLiveSettings(const Config& fresh) {
  if (std::string e = ApplyAclSettings(acl_.get(), config_, fresh); !e.empty()) {
    LOG_WARNING("Reload: %s", e.c_str());
  }
  if (counters_ != nullptr) {
    counters_->SetSlowLogSettings(fresh.slowlog_slower_than, fresh.slowlog_max_len);
  }
  // Memory settings are live: the store reads them from its header.
  if (store_ != nullptr) {
    store_->SetMaxmemory(fresh.maxmemory, shm::Store::LockUse::kNoLocks);
    store_->SetPolicy(PolicyFromName(fresh.maxmemory_policy));
  }
  log::Level level;
  if (log::ParseLevel(fresh.log_level, &level)) log::SetLevel(level);
  if (fresh.log_file != config_.log_file) {
    if (std::string e = log::Open(fresh.log_file); !e.empty()) LOG_WARNING("%s", e.c_str());
  }
}

void Supervisor::Reload() {
  LOG_NOTICE("Reloading configuration");
  Notify("RELOADING=1");
  std::vector<char*> args;
  for (std::string& a : argv_) args.push_back(a.data());
  Config fresh;
  // CLI11 prints its own error; the master's log says what happened next.
  int rc = ParseArgs(static_cast<int>(args.size()), args.data(), &fresh);
  std::string restart_only = rc == 0 ? RestartOnlyChange(config_, fresh) : "";
  // A new maxclients needs room under the open file limit, as at start: the
  // master raises it (the new workers inherit it) or lowers maxclients.
  bool fits = rc == 0 && restart_only.empty() && AdjustOpenFilesLimit(&fresh, /*at_start=*/false);
  // The certificate, key and CAs are read again at every reload, changed
  // settings or not: rotating a certificate is replacing its files, then
  // SIGHUP. New workers get the new context; running TLS clients keep
  // their sessions with the old workers.
  std::string tls_error = rc == 0 && restart_only.empty() && fits ? LoadTls(fresh) : "";
  if (rc != 0 || !restart_only.empty() || !fits || !tls_error.empty()) {
    LOG_WARNING("Reload refused: %s; still running with the previous configuration",
                rc != 0 ? "the configuration is invalid"
                : !restart_only.empty()
                    ? ("changing '" + restart_only + "' needs a restart").c_str()
                : !fits ? "the open file limit leaves no room for a client"
                        : ("TLS: " + tls_error).c_str());
    Notify("READY=1\nSTATUS=serving (last reload refused)");
    Count(shm::slots::kReloadsFailed);
    return;
  }
  Count(shm::slots::kReloadsOk);
  ApplyLiveSettings(fresh);
  bool changed = !SameExceptLive(config_, fresh);
  config_ = fresh;
  // The old workers take the live settings at once; they serve until their
  // successors are ready.
  PublishLiveConfig();
  // As nginx does, a reload always replaces the workers, changed settings or
  // not: it is how an operator gets fresh worker processes (a leak, a stuck
  // client) without dropping a connection.
  LOG_NOTICE("Reloaded: replacing workers slot by slot%s",
             changed ? " (settings that need new workers changed)" : "");
  roll_queue_.clear();
  for (Slot& s : slots_) roll_queue_.push_back(s.index);
  rolling_ = true;
  RollNext();
}

}  // namespace redhub::master
