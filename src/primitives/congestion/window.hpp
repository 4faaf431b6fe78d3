// congestion.window — a congestion window over reliable data, following the worst acking
// receiver (paper Table 3). Its window, bytes in flight and queue are gauges (read_gauges,
// congestion.*); the class is declared here so that white-box tests can read its
// acknowledged floor through Pipeline::stage(). The behaviour is documented at the top of
// window.cpp and in its StageInfo.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string_view>
#include <utility>
#include <vector>

#include "primitives/common/min_tree.hpp"
#include "tmc/congestion.hpp"
#include "tmc/stage.hpp"

namespace tmc::detail {

struct AckBody;

class CongestionWindowStage final : public Stage {
 public:
  /// Controllers beyond the built-ins (a module set's), asked for an algorithm name that
  /// make_congestion_controller() does not know; nullptr when it does not know it either.
  using ControllerMaker =
      std::function<std::unique_ptr<CongestionController>(std::string_view, const CongestionLimits&)>;

  CongestionWindowStage() = default;
  explicit CongestionWindowStage(ControllerMaker more) : more_(std::move(more)) {}
  ~CongestionWindowStage() override;
  CongestionWindowStage(const CongestionWindowStage&) = delete;
  CongestionWindowStage& operator=(const CongestionWindowStage&) = delete;

  bool configure(const Params& params, const StageEnv& env, std::vector<std::string>& errors) override;
  void on_send(Packet* p, StageIo& io) noexcept override;
  void on_receive(Packet* p, StageIo& io) noexcept override;
  void on_tick(StageIo& io) noexcept override;
  void on_stop(StageIo& io) noexcept override;
  void on_forget(std::uint64_t token, ForgetScope scope, StageIo& io) noexcept override;
  [[nodiscard]] std::size_t held_packets() const noexcept override { return queue_.size(); }
  void read_gauges(std::span<double> out) const noexcept override;

  // --- white-box reads (tests) -----------------------------------------------------------
  /// Highest reliable sequence number acknowledged by every followed receiver (or given up).
  [[nodiscard]] std::uint64_t floor_rseq() const noexcept { return floor_; }

 private:
  struct Sent {
    std::uint64_t rseq = 0;  ///< 0: the slot is free
    std::uint64_t sent_ns = 0;
    std::uint32_t bytes = 0;
    bool retransmitted = false;
  };
  struct Peer {
    std::uint32_t epoch = 0;
    std::uint64_t cum = 0;    ///< its highest cumulative ack for our current epoch
    bool acked = false;       ///< has acknowledged something in `epoch`
    bool lagging = false;     ///< left behind by a stall; followed again once cum >= floor
  };

  [[nodiscard]] bool can_send(std::uint64_t rseq, std::uint64_t bytes) noexcept;
  void record(std::uint64_t rseq, std::uint64_t bytes, StageIo& io, bool retransmission = false) noexcept;
  void refresh_floor(StageIo& io) noexcept;
  void advance_floor(std::uint64_t to, StageIo& io, bool acked) noexcept;
  void loss(StageIo& io) noexcept;
  void take_ack(const detail::AckBody& a, const Packet& p, bool sack_loss, StageIo& io) noexcept;
  void release(StageIo& io) noexcept;
  void schedule(StageIo& io) noexcept;
  void stall(StageIo& io) noexcept;
  /// Whether the window follows receiver slot `s` (in Group::receivers()).
  [[nodiscard]] bool follows(const Group& g, int s) const noexcept;
  /// Cold: per-receiver state for every slot of the view, and the tree of the followed
  /// receivers' cumulative acks rebuilt for this view.
  void fit_view(const Group& g);
  /// Slot `s`'s leaf in followed_: its cumulative ack while followed, else none.
  void refresh_leaf(const Group& g, int s) noexcept;
  void note_window(StageIo& io) noexcept;
  Packet* pop() noexcept;
  void drop_expired(StageIo& io) noexcept;

  std::unique_ptr<CongestionController> ctrl_;
  ControllerMaker more_;
  StageEnv env_{};
  bool unlimited_ = false;  ///< algorithm "none"
  std::uint64_t stall_ns_ = 1'000'000'000;
  std::uint64_t recheck_ns_ = 5'000'000;

  std::vector<Sent> ring_;  ///< allocated at the first reliable packet (cold, once)
  std::uint64_t ring_mask_ = 0;
  std::uint64_t ring_cap_ = 0;
  std::uint64_t highest_seen_ = 0;  ///< highest rseq that came down (sent or queued)
  std::uint64_t highest_sent_ = 0;  ///< highest rseq recorded as transmitted
  std::uint64_t highest_data_passed_ = 0;  ///< highest data rseq passed down (queue is in rseq order)
  std::uint64_t floor_ = 0;         ///< every rseq <= floor_ is acked by all followed (or forgotten)
  std::uint64_t in_flight_ = 0;     ///< datagram bytes of recorded rseqs above floor_
  std::uint64_t recovery_point_ = 0;  ///< losses at or below it belong to the last congestion event
  std::uint64_t last_progress_ns_ = 0;
  std::uint64_t view_id_ = ~std::uint64_t{0};
  bool open_ = false;  ///< nobody receives: nothing to wait for
  std::vector<Peer> peers_;  ///< by Group slot; grows with the view (fit_view(), cold)
  MinTree followed_;         ///< the followed receivers' cum: the floor is its minimum
  std::uint64_t tree_view_ = ~std::uint64_t{0};  ///< the view followed_ was built for
  std::uint64_t max_window_seen_ = 0;

  PacketFifo queue_;  ///< packets waiting, oldest first
  bool armed_ = false;
};

}  // namespace tmc::detail
