#include "config.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>

#include "settings.h"
#include "version.h"

namespace redhub::master {

bool ParseMemory(const std::string& text, uint64_t* bytes) {
  size_t digits = 0;
  while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) digits++;
  if (digits == 0 || digits > 19) return false;
  std::string unit = text.substr(digits);
  std::transform(unit.begin(), unit.end(), unit.begin(), ::tolower);
  static const struct {
    const char* unit;
    uint64_t mul;
  } kUnits[] = {{"", 1},
                {"b", 1},
                {"k", 1000},
                {"kb", 1024},
                {"m", 1000 * 1000},
                {"mb", 1024 * 1024},
                {"g", 1000000000},
                {"gb", 1024ull * 1024 * 1024}};
  for (const auto& u : kUnits) {
    if (unit == u.unit) {
      uint64_t n = std::stoull(text.substr(0, digits));
      if (n > UINT64_MAX / u.mul) return false;
      *bytes = n * u.mul;
      return true;
    }
  }
  return false;
}

int ParseArgs(int argc, char** argv, Config* config) {
  CLI::App app{"redhubd: a Redis-protocol server"};
  app.set_config("--config", "", "Read options from this file (TOML or INI: port = 6380)");
  app.allow_config_extras(false);
  app.set_version_flag("--version", std::string("redhubd ") + kVersion);
  // Every setting's option, from the table (settings.cc).
  AddSettingOptions(app, config);

  try {
    app.parse(argc, argv);
    config->config_file = app.get_config_ptr()->as<std::string>();
  } catch (const CLI::ParseError& e) {
    // app.exit prints the help, the version or the error (once: it prints
    // on every call). --help and --version succeed; any other parse error is
    // a usage error, exit code 2 like the checks below, not CLI11's
    // per-kind codes (104, 105, ...).
    return app.exit(e) == 0 ? -1 : 2;
  }
  if (std::string e = FinishSettings(config); !e.empty()) {
    std::cerr << e << "\n";
    return 2;
  }
  return 0;
}

}  // namespace redhub::master
