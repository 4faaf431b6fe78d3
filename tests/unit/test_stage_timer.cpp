// StageTimer: a stage's deadlines reach the shell as one timer, armed at the earliest and
// re-armed only when that changes.
#include <doctest/doctest.h>

#include <cstdint>
#include <vector>

#include "primitives/common/stage_timer.hpp"
#include "tmc/packet.hpp"

using namespace tmc;
using tmc::detail::earliest_deadline;
using tmc::detail::StageTimer;

namespace {

/// Records the timer calls; nothing else is used.
class TimerIo final : public StageIo {
 public:
  TimerIo() : StageIo(&now) {}
  void down(Packet*) noexcept override {}
  void up(Packet*) noexcept override {}
  void drop(Packet*, DropReason) noexcept override {}
  void arm_timer(std::uint64_t d) noexcept override { calls.push_back(d); }
  void cancel_timer() noexcept override { calls.push_back(kCancel); }
  void count(std::size_t, std::uint64_t) noexcept override {}
  void notify(const Event&) noexcept override {}
  Packet* alloc() noexcept override { return nullptr; }
  Packet* clone(const Packet&) noexcept override { return nullptr; }
  Packet* alloc_large(std::uint32_t) noexcept override { return nullptr; }
  Group& group() noexcept override { return view; }

  static constexpr std::uint64_t kCancel = ~std::uint64_t{0};
  std::uint64_t now = 0;
  Group view;
  std::vector<std::uint64_t> calls;
};

}  // namespace

TEST_CASE("stage timer: earliest_deadline ignores unset deadlines") {
  CHECK(earliest_deadline({}) == 0);
  CHECK(earliest_deadline({0, 0}) == 0);
  CHECK(earliest_deadline({0, 30, 10, 0, 20}) == 10);
  CHECK(earliest_deadline({5}) == 5);
}

TEST_CASE("stage timer: arm_earliest tells the shell only when the earliest deadline changes") {
  TimerIo io;
  StageTimer t;
  t.arm_earliest(io, {0, 0});  // nothing to arm, nothing armed: no call
  CHECK(io.calls.empty());
  t.arm_earliest(io, {300, 100});
  t.arm_earliest(io, {100, 200});  // still 100: no call
  CHECK(io.calls == std::vector<std::uint64_t>{100});
  CHECK(t.armed() == 100);
  t.arm_earliest(io, {0, 50});
  t.arm_earliest(io, {0, 0});  // nothing left: disarm
  CHECK(io.calls == std::vector<std::uint64_t>{100, 50, TimerIo::kCancel});
  CHECK(t.armed() == 0);
}

TEST_CASE("stage timer: arm_by keeps an earlier deadline; fired and cancel forget the armed one") {
  TimerIo io;
  StageTimer t;
  t.arm_by(io, 100);
  t.arm_by(io, 200);  // later than armed: kept at 100
  t.arm_by(io, 60);
  CHECK(io.calls == std::vector<std::uint64_t>{100, 60});
  t.fired();  // the shell disarmed it before on_tick
  CHECK(t.armed() == 0);
  t.arm_by(io, 200);
  t.cancel(io);
  CHECK(t.armed() == 0);
  t.set(io, 0);  // disarmed already: no call
  CHECK(io.calls == std::vector<std::uint64_t>{100, 60, 200, TimerIo::kCancel});
}
