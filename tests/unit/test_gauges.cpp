// Stage gauges: every built-in fills exactly the gauges it declares, the pipeline collects
// them in order, and the registry refuses a gauge declared twice.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "../support/recording_sink.hpp"
#include "runtime/pipeline.hpp"
#include "tmc/stage.hpp"

using namespace tmc;
using namespace tmc::test;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

}  // namespace

TEST_CASE("gauges: every built-in declares documented, prefixed gauges and fills exactly them") {
  const Registry& r = Registry::builtin();
  std::size_t kinds_with_gauges = 0;
  for (const StageInfo* s : r.all()) {
    CAPTURE(s->kind);
    const std::string category(s->kind.substr(0, s->kind.find('.') + 1));
    std::set<std::string_view> names;
    for (const GaugeSpec& g : s->gauges) {
      CAPTURE(g.name);
      CHECK(g.name.starts_with(category));  // "<category>.<name>", like its counters
      CHECK(!g.doc.empty());
      CHECK(names.insert(g.name).second);
    }
    Params params;
    std::vector<std::string> errors;
    REQUIRE(r.resolve_params(*s, {}, params, errors));
    std::unique_ptr<Stage> st = s->factory();
    if (!st->configure(params, make_env(1), errors)) {
      // A stage that cannot run on defaults alone (security.aead needs a key file) must
      // then declare no gauges, or this test could not check them.
      CHECK(s->gauges.empty());
      continue;
    }
    // Two sentinels past the end catch a stage that writes beyond its own gauges.
    const std::size_t n = s->gauges.size();
    std::vector<double> out(n + 2, kNaN);
    st->read_gauges(std::span<double>(out.data(), n));
    for (std::size_t i = 0; i < n; ++i) {
      CAPTURE(s->gauges[i].name);
      CHECK(!std::isnan(out[i]));
    }
    CHECK(std::isnan(out[n]));
    CHECK(std::isnan(out[n + 1]));
    kinds_with_gauges += n > 0 ? 1 : 0;
  }
  // The stages whose state operators need to see.
  for (const char* kind : {"congestion.window", "flow.credit", "reliability.arq", "pacing.bucket", "fragment.split",
                           "ordering.fifo"}) {
    CAPTURE(kind);
    REQUIRE(r.find(kind) != nullptr);
    CHECK(!r.find(kind)->gauges.empty());
  }
  CHECK(kinds_with_gauges >= 6);
}

TEST_CASE("gauges: the pipeline collects every stage's gauges in pipeline order and reads them now") {
  PacketPool pool(2048, 64, 1024);
  Endpoint ep(pool,
              make_plan({stage("reliability.arq", {{"rto_initial_us", "40000"}}), stage("flow.credit"),
                         stage("congestion.window", {{"algorithm", "aimd"}}), stage("pacing.bucket")}),
              make_env(1));
  std::vector<std::string> want;
  for (const char* kind : {"reliability.arq", "flow.credit", "congestion.window", "pacing.bucket"}) {
    for (const GaugeSpec& g : Registry::builtin().find(kind)->gauges) want.emplace_back(g.name);
  }
  const GaugeSnapshot g = ep->gauges();
  CHECK(g.names == want);
  REQUIRE(g.values.size() == want.size());
  for (double v : g.values) CHECK(!std::isnan(v));
  CHECK(g.get("reliability.rto_ns") == 40'000'000.0);  // no RTT sample yet: the initial RTO
  CHECK(g.get("reliability.srtt_ns") == 0.0);
  CHECK(g.get("reliability.in_flight") == 0.0);
  CHECK(g.get("flow.credit_bytes") == std::numeric_limits<double>::infinity());  // nobody to wait for
  CHECK(g.get("congestion.in_flight_bytes") == 0.0);
  CHECK(g.get("congestion.window_bytes") > 0.0);
  CHECK(std::isnan(g.get("no.such_gauge")));
}

namespace {

// Declares two gauges and fills only the first: the pipeline must not invent the second.
class HalfGauges final : public Stage {
 public:
  bool configure(const Params&, const StageEnv&, std::vector<std::string>&) override { return true; }
  void read_gauges(std::span<double> out) const noexcept override { out[0] = 7; }
};

constexpr GaugeSpec kHalf[] = {{"demo.filled", "set"}, {"demo.forgotten", "never set"}};

}  // namespace

TEST_CASE("gauges: one a stage leaves unfilled reads NaN, and a gauge declared twice is refused") {
  Registry r;
  REQUIRE(r.add(StageInfo{.kind = "demo.half",
                          .synopsis = "s",
                          .notes = "n",
                          .params = {},
                          .counters = {},
                          .gauges = gauge_list(kHalf),
                          .factory = [] { return std::make_unique<HalfGauges>(); }})
              .is_ok());
  PacketPool pool(2048, 4, 64);
  RecordingSink sink;
  std::unique_ptr<Pipeline> pl;
  REQUIRE(Pipeline::build(make_plan({stage("demo.half")}), r, make_env(1), pool, sink, pl).is_ok());
  const GaugeSnapshot g = pl->gauges();
  CHECK(g.get("demo.filled") == 7.0);
  CHECK(std::isnan(g.get("demo.forgotten")));

  constexpr GaugeSpec kTwice[] = {{"demo.x", "a"}, {"demo.x", "b"}};
  const Status st = r.add(StageInfo{.kind = "demo.twice",
                                    .synopsis = "s",
                                    .notes = "n",
                                    .params = {},
                                    .counters = {},
                                    .gauges = gauge_list(kTwice),
                                    .factory = [] { return std::make_unique<HalfGauges>(); }});
  CHECK(!st.is_ok());
  CHECK(st.to_string().find("gauge 'demo.x' is declared twice") != std::string::npos);
}
