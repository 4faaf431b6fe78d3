// A complete module: a counting pass-through stage and a fixed-window congestion
// controller, exported with one macro. docs/modules.md walks through it.
#include <tmc/module.hpp>

namespace {

#define TALLY_COUNTERS(X, P)                                 \
  X(P, sent, "messages passed down")                         \
  X(P, received, "packets passed up")                        \
  X(P, ticks, "timer ticks")
TMC_STAGE_COUNTERS("tally.count.", TALLY_COUNTERS);

constexpr std::string_view kModes[] = {"pass", "fault", "throw"};

// Passes everything through and counts it. `mode: fault` reports a fault on the
// `fault_after`-th message (containment tests); `mode: throw` throws in configure().
class Tally final : public tmc::Stage {
 public:
  bool configure(const tmc::Params& params, const tmc::StageEnv&, std::vector<std::string>& errors) override {
    mode_ = params.text("mode");
    fault_after_ = static_cast<std::uint64_t>(params.integer("fault_after"));
    tick_us_ = static_cast<std::uint64_t>(params.integer("tick_us"));
    if (mode_ == "throw") throw std::runtime_error("tally was asked to throw");
    if (mode_ == "fault" && fault_after_ == 0) {
      errors.push_back("parameter 'fault_after' must be at least 1 with mode 'fault'");
      return false;
    }
    return true;
  }
  void on_start(tmc::StageIo& io) noexcept override {
    if (tick_us_ > 0) io.arm_timer(io.now_ns() + tick_us_ * 1000);
  }
  void on_send(tmc::Packet* p, tmc::StageIo& io) noexcept override {
    io.count(sent);
    if (mode_ == "fault" && ++messages_ == fault_after_) {
      io.drop(p, tmc::DropReason::unsupported);  // the stage still owns what it was given
      tmc::module::fault(io);
      return;
    }
    io.down(p);
  }
  void on_receive(tmc::Packet* p, tmc::StageIo& io) noexcept override {
    io.count(received);
    io.up(p);
  }
  void on_tick(tmc::StageIo& io) noexcept override {
    io.count(ticks);
    io.arm_timer(io.now_ns() + tick_us_ * 1000);
  }

 private:
  std::string mode_;
  std::uint64_t fault_after_ = 0;
  std::uint64_t messages_ = 0;
  std::uint64_t tick_us_ = 0;
};

tmc::StageInfo tally_info() {
  return {.kind = "tally.count",
          .synopsis = "Counts what passes; passes everything on.",
          .notes = "A test and example stage. No wire bytes.",
          .params = {{.name = "mode", .type = tmc::ParamType::string, .default_value = "pass",
                      .doc = "pass; fault (report a fault at message fault_after); throw (in configure)",
                      .one_of = kModes},
                     {.name = "fault_after", .type = tmc::ParamType::integer, .default_value = "0",
                      .doc = "With mode fault: the message that faults.", .min = 0},
                     {.name = "tick_us", .type = tmc::ParamType::integer, .default_value = "0",
                      .doc = "Tick every this many microseconds; 0 = never.", .min = 0, .max = 1'000'000}},
          .counters = tmc::counter_list(kCounters),
          .factory = [] { return std::make_unique<Tally>(); },
          .layer = tmc::StageLayer::datagram};
}

// A window that never moves: mss * initial_window_packets.
class FixedWindow final : public tmc::CongestionController {
 public:
  explicit FixedWindow(const tmc::CongestionLimits& l) : window_(std::uint64_t{l.mss_bytes} * l.initial_window_packets) {}
  void on_sent(std::uint64_t, std::uint64_t) noexcept override {}
  void on_acked(std::uint64_t, std::uint64_t, std::uint64_t) noexcept override {}
  void on_loss(std::uint64_t) noexcept override {}
  [[nodiscard]] std::uint64_t window_bytes() const noexcept override { return window_; }
  [[nodiscard]] std::string_view name() const noexcept override { return "fixed"; }

 private:
  std::uint64_t window_;
};

}  // namespace

TMC_MODULE("tally", "1.0.0",
           TMC_MODULE_STAGE(tally_info()),
           TMC_MODULE_CONTROLLER("fixed", "a window of initial_window_packets that never moves",
                                 [](const tmc::CongestionLimits& l) { return std::make_unique<FixedWindow>(l); }))
