// Pipeline stage timers: arm_timer / cancel_timer and the pipeline's next deadline.
#include <doctest/doctest.h>

#include <algorithm>
#include <charconv>
#include <string_view>

#include "../support/recording_sink.hpp"

using namespace tmc;
using namespace tmc::test;

namespace {

// test.timer_probe: each message sent through it is a command for its timer, "arm <ns>"
// or "cancel"; every tick is counted under its counter 0. Messages are consumed.
class TimerProbe final : public Stage {
 public:
  /// `forward`: commands starting with it pass down untouched (to a probe below this one).
  /// `strip`: bytes removed from the front of each command before it is read.
  explicit TimerProbe(std::string_view forward = {}, std::size_t strip = 0) : forward_(forward), strip_(strip) {}

  bool configure(const Params&, const StageEnv&, std::vector<std::string>&) override { return true; }
  void on_send(Packet* p, StageIo& io) noexcept override {
    std::string_view cmd(reinterpret_cast<const char*>(p->payload()), p->payload_len);
    if (!forward_.empty() && cmd.starts_with(forward_)) {
      io.down(p);
      return;
    }
    cmd.remove_prefix(std::min(strip_, cmd.size()));
    if (cmd == "cancel") {
      io.cancel_timer();
    } else if (cmd.starts_with("arm ")) {
      std::uint64_t ns = 0;
      (void)std::from_chars(cmd.data() + 4, cmd.data() + cmd.size(), ns);
      io.arm_timer(ns);
    }
    io.drop(p, DropReason::injected);
  }
  void on_tick(StageIo& io) noexcept override { io.count(0); }

 private:
  std::string_view forward_;
  std::size_t strip_;
};

const Registry& probe_registry() {
  static const Registry reg = [] {
    Registry r;
    register_builtin_stages(r);
    const Status s = r.add(StageInfo{.kind = "test.timer_probe",
                                     .synopsis = "timer probe",
                                     .notes = "",
                                     .params = {},
                                     .counters = {{"test.ticks", "ticks"}},
                                     .factory = [] { return std::make_unique<TimerProbe>(); }});
    REQUIRE(s.is_ok());
    return r;
  }();
  return reg;
}

// A pipeline of one probe, driven by commands sent through it.
struct Probes {
  PacketPool pool{2048, 8, 64};
  RecordingSink sink;
  std::unique_ptr<Pipeline> a;

  Probes() {
    REQUIRE(Pipeline::build(make_plan({stage("test.timer_probe")}), probe_registry(), make_env(1), pool, sink, a)
                .is_ok());
  }
  void cmd(Pipeline& pl, std::string_view text, std::uint64_t now_ns) {
    Packet* p = pool.alloc();
    REQUIRE(p != nullptr);
    p->reset_for_send(static_cast<std::uint32_t>(text.size()));
    std::memcpy(p->payload(), text.data(), text.size());
    pl.send(p, now_ns);
  }
  static std::uint64_t ticks(const Pipeline& pl) { return pl.counters().get("test.ticks"); }
};

// For two timers in one pipeline: probe A passes commands prefixed "b:" down to probe B,
// which reads them without the prefix.
const Registry& two_registry() {
  static const Registry reg = [] {
    Registry r;
    register_builtin_stages(r);
    REQUIRE(r.add(StageInfo{.kind = "test.probe_a",
                            .synopsis = "timer probe A",
                            .notes = "",
                            .params = {},
                            .counters = {{"test.ticks_a", "ticks of A"}},
                            .factory = [] { return std::make_unique<TimerProbe>("b:"); }})
                .is_ok());
    REQUIRE(r.add(StageInfo{.kind = "test.probe_b",
                            .synopsis = "timer probe B",
                            .notes = "",
                            .params = {},
                            .counters = {{"test.ticks_b", "ticks of B"}},
                            .factory = [] { return std::make_unique<TimerProbe>(std::string_view{}, 2); }})
                .is_ok());
    return r;
  }();
  return reg;
}

}  // namespace

TEST_CASE("pipeline timers: arming for time 0 at time 0 is a deadline, not a cancel") {
  Probes t;
  t.cmd(*t.a, "arm 0", 0);
  CHECK(t.a->next_deadline_ns() == 1);  // 0 is taken as 1: the clock may start at 0
  t.a->tick(0);
  CHECK(Probes::ticks(*t.a) == 0);  // not due yet at 0 ...
  t.a->tick(1);
  CHECK(Probes::ticks(*t.a) == 1);  // ... but due at 1
  CHECK(t.a->next_deadline_ns() == 0);
}

TEST_CASE("pipeline timers: cancel_timer disarms") {
  Probes t;
  t.cmd(*t.a, "arm 500", 0);
  CHECK(t.a->next_deadline_ns() == 500);
  t.cmd(*t.a, "cancel", 10);
  CHECK(t.a->next_deadline_ns() == 0);
  t.a->tick(1000);
  CHECK(Probes::ticks(*t.a) == 0);
}

TEST_CASE("pipeline timers: moving a deadline later moves the pipeline's next deadline too") {
  PacketPool pool{2048, 8, 64};
  RecordingSink sink;
  std::unique_ptr<Pipeline> pl;
  REQUIRE(Pipeline::build(make_plan({stage("test.probe_a"), stage("test.probe_b")}), two_registry(), make_env(1),
                          pool, sink, pl)
              .is_ok());
  auto cmd = [&](std::string_view text, std::uint64_t now_ns) {
    Packet* p = pool.alloc();
    REQUIRE(p != nullptr);
    p->reset_for_send(static_cast<std::uint32_t>(text.size()));
    std::memcpy(p->payload(), text.data(), text.size());
    pl->send(p, now_ns);
  };
  auto ticks = [&](const char* name) { return pl->counters().get(name); };

  SUBCASE("alone: later replaces earlier") {
    cmd("arm 100", 0);
    CHECK(pl->next_deadline_ns() == 100);
    cmd("arm 300", 0);
    CHECK(pl->next_deadline_ns() == 300);
    pl->tick(100);  // formerly a spurious tick
    CHECK(ticks("test.ticks_a") == 0);
    pl->tick(300);
    CHECK(ticks("test.ticks_a") == 1);
  }
  SUBCASE("with another stage: the other's deadline becomes the next") {
    cmd("arm 100", 0);
    cmd("b:arm 200", 0);
    CHECK(pl->next_deadline_ns() == 100);
    cmd("arm 400", 0);
    CHECK(pl->next_deadline_ns() == 200);
    cmd("b:cancel", 0);
    CHECK(pl->next_deadline_ns() == 400);
    cmd("arm 50", 0);
    CHECK(pl->next_deadline_ns() == 50);
    cmd("b:arm 60", 0);  // later than the earliest: leaves it alone
    CHECK(pl->next_deadline_ns() == 50);
    pl->tick(60);
    CHECK(ticks("test.ticks_a") == 1);
    CHECK(ticks("test.ticks_b") == 1);
    CHECK(pl->next_deadline_ns() == 0);
  }
  CHECK(pool.in_use() == 0);
}
