// The daemon's settings, one row each (Pelikan's WORKER_OPTION idea): the
// flag, the config-file key, whether a reload can change it, its help and
// how it reads and writes its Config field. Everything that used to list
// settings by hand is derived from the rows:
//   - the CLI11 options, hence --help and the config file (CLI11 reads
//     "maxclients = 1000" into --maxclients: the key is the flag's name);
//   - SameExceptLive and RestartOnlyChange (config.h), from the Change column;
//   - ConfigParameters, the names and values CONFIG GET reports.
// Defaults are Config's member initialisers (config.h), written once; a row
// only says whether --help shows the default.
//
// Adding a setting: a field in Config (with its default), then one row in
// settings.cc's table; a reload-live one also needs the code that applies
// it (master/reload.cc for the master, EncodeLiveConfig for the workers).
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config.h"

namespace CLI {
class App;
class Option;
}  // namespace CLI

namespace redhub::master {

// What a SIGHUP reload does with a changed value.
enum class Change {
  kLive,        // the running master and workers take it at once
  kNewWorkers,  // taken by the workers a reload starts (a reload always starts new ones)
  kRestart,     // the reload is refused: only a restart can change it (sockets, slots)
  kNextStart,   // accepted, but read only at start and at exit (--shm-keep): as before
};

std::string_view NameOf(Change change);

struct Setting {
  // The flag is "--" + name. It is also the config-file key (CLI11 derives
  // it from the flag) and the name RestartOnlyChange reports; where Redis has
  // the setting it is Redis's name (maxclients, tcp-keepalive, ...).
  const char* name;
  Change change;
  const char* help;
  // Adds the CLI11 option, bound to the row's field of *config (which holds
  // the default when this runs).
  std::function<CLI::Option*(CLI::App& app, Config* config)> add;
  // Whether a and b hold the same value.
  std::function<bool(const Config& a, const Config& b)> same;
  // The value as text, as CONFIG GET shows it.
  std::function<std::string(const Config& config)> text;
  // After parsing: "" or a usage error to print (a range CLI11 cannot
  // check, a default that depends on another setting). May adjust *config.
  std::function<std::string(Config* config)> finish;
};

// Every setting, in --help order.
const std::vector<Setting>& Settings();
// The row named name ("maxclients"), or nullptr.
const Setting* FindSetting(std::string_view name);

// Adds every row's option to app.
void AddSettingOptions(CLI::App& app, Config* config);
// Runs every row's finish in table order; returns the first error or "".
std::string FinishSettings(Config* config);

// CONFIG GET's parameters, names and values, in the order the worker's
// CONFIG GET has always replied: the rows Redis also has, plus Redis's
// constants (databases, save, appendonly) and client-output-buffer-limit
// rendered from the two output-buffer rows. "port" is config.port: give a
// copy with the port actually bound when --port 0 picked one.
using ConfigParameterList = std::vector<std::pair<std::string, std::string>>;
ConfigParameterList ConfigParameters(const Config& config);

}  // namespace redhub::master
