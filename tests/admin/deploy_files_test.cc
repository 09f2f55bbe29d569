// The monitoring files in deploy/: the scrape configuration and the alert
// rules must load in Prometheus 2.42 (Debian 12), checked by promtool; the
// Grafana dashboard must be JSON.
#include <gtest/gtest.h>

#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include "admin_test_util.h"
#include "metrics_collector.h"
#include "worker_counters.h"

namespace redhub::admin {
namespace {

const std::string kDeploy = std::string(REDHUB_SOURCE_DIR) + "/deploy";
const std::string kTests = std::string(REDHUB_SOURCE_DIR) + "/tests/admin";

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(DeployFilesTest, PrometheusConfigLoads) {
  if (std::string(PROMTOOL_PATH).empty())
    FAIL() << "promtool not installed (deploy/install-deps.sh installs it)";
  // Also loads the rule files it names (relative to the config's folder).
  auto r = testing::RunCommand({PROMTOOL_PATH, "check", "config", "prometheus.yml"}, kDeploy);
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

TEST(DeployFilesTest, AlertRulesLoad) {
  if (std::string(PROMTOOL_PATH).empty())
    FAIL() << "promtool not installed (deploy/install-deps.sh installs it)";
  auto r = testing::RunCommand({PROMTOOL_PATH, "check", "rules", "redhub-alerts.yml"}, kDeploy);
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

// Each alert fires on the series it is meant for (redhub-alerts.test.yml).
TEST(DeployFilesTest, AlertRulesFireAsIntended) {
  if (std::string(PROMTOOL_PATH).empty())
    FAIL() << "promtool not installed (deploy/install-deps.sh installs it)";
  auto r = testing::RunCommand({PROMTOOL_PATH, "test", "rules", "redhub-alerts.test.yml"}, kTests);
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

// Every redis_* or redhub_* name the alerts and the dashboard use is one
// that /metrics exports (with everything nonzero), so a rename cannot leave
// a silent alert or an empty panel behind.
TEST(DeployFilesTest, AlertsAndDashboardUseExportedNames) {
  namespace slots = shm::slots;
  Snapshot s;
  s.totals.assign(slots::kSlots, 1);
  s.command_names.assign(slots::kMaxCommands, "get");
  std::set<std::string> exported;
  for (const auto& f : BuildFamilies(s, StaticInfo{"v", 0, 1})) {
    exported.insert(f.name);
    if (f.type == prometheus::MetricType::Histogram) {
      for (const char* suffix : {"_bucket", "_sum", "_count"}) exported.insert(f.name + suffix);
    }
  }
  const std::regex name(R"(\b(redis|redhub)_[a-z_]+\b)");
  for (const char* file : {"redhub-alerts.yml", "grafana-dashboard.json"}) {
    const std::string text = ReadFile(kDeploy + "/" + file);
    ASSERT_FALSE(text.empty()) << file;
    int used = 0;
    for (std::sregex_iterator it(text.begin(), text.end(), name), end; it != end; ++it) {
      EXPECT_TRUE(exported.count(it->str())) << file << " uses " << it->str();
      used++;
    }
    EXPECT_GT(used, 3) << file;
  }
}

TEST(DeployFilesTest, GrafanaDashboardIsJson) {
  if (std::string(PYTHON3_PATH).empty())
    FAIL() << "python3 not installed (deploy/install-deps.sh installs it)";
  auto r =
      testing::RunCommand({PYTHON3_PATH, "-m", "json.tool", "grafana-dashboard.json"}, kDeploy);
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

}  // namespace
}  // namespace redhub::admin
