// ordering.group — group (total) ordering: every member delivers the group's messages in
// one order (paper §2, Fig. 3's second channel; the OUM of §3 when the network sequences).
//
// Synopsis
//   A sequencer assigns each ordered data message a global sequence number; members deliver
//   in that order, their own messages included.
// Params
//   sequencer (string, "")          member name of the sequencer; "" = the member with the
//                                   smallest name among self and the view's alive or
//                                   expected members (recomputed when the view changes)
//   network_sequencer (string, "")  "ip:port" of an in-network sequencer (tmc-sequencer);
//                                   "" = a member sequences
//   reliable (bool, false)          reliability.arq (ack from all) and membership.heartbeat
//                                   sit below: stability-based delivery and sequencer
//                                   failover with agreement (below); nothing is skipped by time
//   hold_us (int, 50000)            unreliable: how long a gap in the global order may stay
//                                   open before it is skipped (gap_skipped event)
//   window (int, 4096)              global sequence numbers held ahead of the next to deliver;
//                                   2 * window messages may wait for their order
//   flush_us (int, 100)             the sequencer sends its batched announcements at most
//                                   this long after the first entry of a batch (reliable
//                                   mode sends them sooner: from the tick after the input
//                                   batch that produced them, see below)
// Wire
//   Member sequencer, unreliable: announcements are Kind::control packets with Ext::order
//   (body 4 bytes: u32 entry count) and a payload of entries {u32 sender, u32 epoch, u64 seq,
//   u64 global} (24 bytes each, big-endian). Global numbers start at 1 per sequencer
//   incarnation; a member follows one sequencer (sender, epoch) at a time — its "term".
//   Member sequencer, reliable: typed Ext::order bodies (announce with a term number,
//   status, term start, re-sent message); layouts in wire.hpp and docs/wire-format.md.
//   Network sequencer: data is unicast to network_sequencer, which multicasts it with
//   Ext::group_seq (u64 global, u32 session; session random per sequencer start).
// Notes
//   Messages are named by (sender, epoch, Packet::seq); ordering.seq must sit below. The
//   member sequencer orders each sender's messages in their per-sender order (it waits for
//   a missing one; unreliable mode gives up after hold_us), so the total order extends FIFO.
//   Data flagged wire::kFlagUnordered bypasses total order and is delivered at once.
//   Self-delivery: the stage keeps a clone of each ordered message it sends and delivers it
//   when its global number comes (member sequencer, and network mode with reliability,
//   where the stamped copy says where); in unreliable network mode the stamped copy comes
//   back from the sequencer (the pipeline lets own packets carrying Ext::group_seq through)
//   and is delivered in its place. The clone's number is predicted by counting data packets
//   on the way down: ordering.seq numbers every data packet it passes, starting at 1.
//   Network mode, reliable: the member also keeps a second clone until the stamped copy
//   comes back, and sends it to the sequencer again (with backoff) when it does not, so
//   that the sequencer multicasts it again with the same number (see "our own stamped
//   copies"). Delivery is stable delivery as with a member sequencer, and when the network
//   sequencer restarts or goes silent the members cut its term with agreement and fail
//   over to a member sequencer for good (see group/failover.cpp).
//
//   Gap events (gap_skipped) of this stage are in global numbers: sender/epoch name the
//   term (sequencer sender id and epoch, or 0 and the session in network mode), seq the
//   first global number skipped, count how many. A data message that reached a member but
//   was never announced (its announcement lost, or the sequencer never got it) is dropped
//   after 4 * hold_us and reported as gap_skipped with its own sender, epoch and seq
//   (count 1). Reliable mode never skips by time.
//
//   Sequencer changes, unreliable modes: a member follows a new term when the
//   view names a new sequencer (or a network sequencer starts a new session); what it holds
//   of the old term is delivered in order with gaps skipped and reported, and
//   sequencer_changed is raised.
//
//   Reliable mode (virtual-synchrony style flush, see group/failover.cpp): a
//   member delivers global g of its term only once g is stable — it and every receiver of
//   its view hold announcement and data for every global <= g, as their status packets say.
//   When the view loses the sequencer (or any receiver), the term is frozen; the view's
//   sequencer collects every receiver's frozen status, cuts the old term at E = the least
//   held_through (>= anything anyone delivered), and starts a new term with a reliable term
//   start carrying the cut and the per-sender cut-offs; members deliver the old term to E,
//   and the new sequencer re-sequences everything else from alive senders. Survivors that
//   stay connected deliver identical sequences; messages of a failed sender beyond the cut
//   are dropped. Members re-send their own undelivered messages after a view change
//   (reliability gives a message up when a member of its ack set fails). Reliable mode
//   needs the view's identities (membership.heartbeat below): a member never heard blocks
//   delivery until it is heard or declared failed.
//
//   Reliable mode, partitions. Views are each member's own and disagree around a split and
//   its heal, so the merge leans on nothing the views agree on: every member freezes its
//   term when its view loses a receiver, or shows one that was failed and heard again
//   meanwhile (Group's MemberInfo::outages), since reliability gave up what it sent that
//   receiver; a receiver that adopted a term start which did not count it makes the
//   sequencer re-cut, so its per-sender cut-offs join the order; members re-send their
//   undelivered messages when a receiver comes back, and whenever their oldest one stays
//   undelivered kOwnStallNs (backing off; the running sequencer then re-cuts too, which
//   repairs an announcement a member never got). Terms are totally ordered (number, then
//   sequencer id), every view picks the smallest name, and each cut takes the highest term
//   number anyone reports: once the views agree, one coordinator cuts every side's term and
//   all sides follow its term, for any number of sides (see group/failover.cpp).
//
//   Reliable mode, latency and load. Stable delivery costs three one-way hops (data to
//   everyone, the announcement, every member's status), so nothing on that path waits for a
//   timer: the sequencer's announcement batch and a member's status both leave from a tick
//   armed for "now", which a shell runs once it has fed the input batch in hand (the entries
//   and holdings that batch advanced share one packet; under load batches grow, packets per
//   message shrink). A deadline even 50 us ahead would cost a whole timer period in a shell
//   with millisecond timers (libuv), and a status left to the periodic one (every 10 ms
//   while something is unstable; it repairs lost statuses) made the median latency half
//   that period. A member sends a status when its held_through moves, or its delivered
//   point moved by a quarter window (the sequencer's window check needs no more); the
//   running sequencer sends none for its holdings: an announcement up to g tells the members
//   it holds every global <= g. From eight receivers on, statuses are sparse (a stride of
//   global numbers, the tail of a burst, stall repairs: Agreement::note_progress), so the
//   group sends about one per data datagram, not one per member. Each member keeps a copy of its ordered messages until it
//   delivers them, in a hold table (2 x window) that every member's messages share: past
//   window / 8 undelivered copies of its own, further messages are send backlog
//   (send_backlog(): the shell holds the application back), so one fast sender cannot fill
//   the tables, where a dropped message (already acknowledged by reliability) would stall
//   stable delivery for good; if the table or the pool is full anyway, the message is not
//   sent at all. max_held_packets() tells the shell to size its pool for the full table.
//
// Files (src/primitives/ordering/group/), by protocol. Arrows point at what a file uses;
// there is no cycle: the parts never call the shell (the member sequencer reports its
// announcements through MemberSequencer::AnnounceSink, an interface it declares and the
// shell implements) and never call each other.
//
//                        stage.hpp: GroupStage, the stage shell
//           (stage.cpp: entry points, the view, unreliable term switching;
//            failover.cpp: reliable terms — freeze, cut, adopt, fail over;
//            registration.cpp: the stage's StageInfo)
//                |                      |                        |
//                v                      v                        v
//      member_sequencer.hpp     network_sequencer.hpp       agreement.hpp
//      numbering, announce-     stamps, sessions, own       statuses, stability,
//      ments (send, place)      copies and restamps         the cut of a frozen term
//                |                      |                        |
//                +----------------------+------------------------+
//                                       v
//                                   table.hpp
//          MsgTable: messages by (sender, epoch, seq), per-sender progress,
//          the term's global order, delivery and the unreliable gap skipping
//                                       |
//                                       v
//                                   wire.hpp
//             byte layouts: announcement entries, the stamp body, and the
//             announce / status / term start / re-send bodies of Ext::order
//
// The network sequencer itself (tools/tmc-sequencer) is not a stage: its admission and
// stamping code is src/sequencer/stamp.{hpp,cpp}, which writes stamps with wire.hpp.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "primitives/common/stage_timer.hpp"
#include "primitives/ordering/group/agreement.hpp"
#include "primitives/ordering/group/member_sequencer.hpp"
#include "primitives/ordering/group/network_sequencer.hpp"
#include "primitives/ordering/group/table.hpp"
#include "tmc/stage.hpp"

namespace tmc::detail::group_order {

class GroupStage final : public Stage, private MemberSequencer::AnnounceSink {
 public:
  bool configure(const Params& params, const StageEnv& env, std::vector<std::string>& errors) override;
  void on_start(StageIo& io) noexcept override;
  void on_stop(StageIo& io) noexcept override;
  void on_send(Packet* p, StageIo& io) noexcept override;
  void on_receive(Packet* p, StageIo& io) noexcept override;
  void on_tick(StageIo& io) noexcept override;
  [[nodiscard]] std::size_t held_packets() const noexcept override;
  [[nodiscard]] std::size_t max_held_packets() const noexcept override;
  [[nodiscard]] std::size_t send_backlog() const noexcept override;

 private:
  // A reliable term's sequencer: following the term; collecting the frozen statuses for a
  // cut; waiting for every receiver to adopt its term start; ordering.
  enum class Role : std::uint8_t { follower, collecting, adopting, running };

  // --- modes ----------------------------------------------------------------------------

  [[nodiscard]] bool rel() const noexcept { return reliable_; }
  [[nodiscard]] bool net_rel() const noexcept { return network_ && reliable_; }
  /// Network mode without reliability: stamped messages are delivered from the table's
  /// direct ring as they come (NOPaxos-style, gaps skipped).
  [[nodiscard]] bool net_unrel() const noexcept { return network_ && !reliable_; }
  /// Network mode, reliable, still on the network sequencer (no member term adopted yet).
  [[nodiscard]] bool net_active() const noexcept { return network_ && net_.active(); }
  /// Whether this member assigns global numbers itself (a member sequencer); in a network
  /// term the view's chosen member only coordinates the cut when the term ends.
  [[nodiscard]] bool orders() const noexcept { return i_sequence_ && !net_active(); }
  /// Reliable mode, when this member does not order: delivery steps over the unordered
  /// numbers that follow a sender's delivered one (see MsgTable::mark_done).
  [[nodiscard]] bool steps_over_unordered() const noexcept {
    return rel() && !(i_sequence_ && role_ == Role::running);
  }
  [[nodiscard]] gw::TermId cur_term() const noexcept { return table_.term(); }
  [[nodiscard]] bool my_term() const noexcept {
    return table_.term().no != 0 && table_.term().sender == env_.sender && table_.term().epoch == env_.epoch;
  }
  [[nodiscard]] bool alive(const Group& g, std::uint32_t sender, std::uint32_t epoch,
                           bool unknown = false) const noexcept {
    return sender_alive(g, env_, sender, epoch, unknown);
  }

  // --- stage.cpp: the view, data, unreliable terms --------------------------------------

  void refresh_view(StageIo& io) noexcept;
  [[nodiscard]] int choose_sequencer(const Group& g) const noexcept;
  void become_sequencer(StageIo& io) noexcept;
  void change_term(std::uint32_t sender, std::uint32_t epoch, StageIo& io) noexcept;
  void store_data(Packet* p, StageIo& io) noexcept;
  void note_unordered(std::uint32_t sender, std::uint32_t epoch, std::uint64_t seq, StageIo& io) noexcept;
  void try_order(std::uint32_t s, StageIo& io) noexcept;
  void announced(std::uint32_t term_no, std::uint64_t top) noexcept override;
  void on_announcement(Packet* p, StageIo& io) noexcept;
  bool accept_term(std::uint32_t sender, std::uint32_t epoch, StageIo& io) noexcept;
  void deliver_ready(StageIo& io) noexcept;
  void receive_stamped(Packet* p, StageIo& io) noexcept;
  void rearm(StageIo& io) noexcept;

  // --- failover.cpp: reliable terms, freezing, cuts, failover ---------------------------

  void receive_stamped_rel(Packet* p, StageIo& io) noexcept;
  void net_fail(StageIo& io) noexcept;
  [[nodiscard]] bool failover_pending() const noexcept;
  [[nodiscard]] bool need_periodic() const noexcept;
  void freeze(StageIo& io) noexcept;
  void rel_refresh(StageIo& io) noexcept;
  void rel_check(StageIo& io) noexcept;
  void rel_deliver(StageIo& io) noexcept;
  void rel_malformed(Packet* p, StageIo& io) noexcept;
  void on_order_reliable(Packet* p, StageIo& io) noexcept;
  void on_announce_rel(Packet* p, std::uint32_t term_no, std::uint32_t n, StageIo& io) noexcept;
  void on_status(Packet* p, const gw::Status& s, StageIo& io) noexcept;
  void on_term_start(Packet* p, const gw::Start& s, StageIo& io) noexcept;
  void try_collect(StageIo& io) noexcept;
  void try_run(StageIo& io) noexcept;
  void order_all(StageIo& io) noexcept;
  void adopt(const gw::TermId& nt, const gw::CutRecord* recs, std::uint32_t nrec, const std::uint8_t* cutoffs,
             std::uint32_t ncut, StageIo& io) noexcept;
  void resend_own(StageIo& io) noexcept;
  void check_own_progress(StageIo& io) noexcept;
  void on_resend(Packet* p, StageIo& io) noexcept;
  void apply_cutoffs(const std::uint8_t* cutoffs, std::uint32_t ncut, StageIo& io) noexcept;
  void drop_below_done(StageIo& io) noexcept;
  void drop_dead(StageIo& io) noexcept;

  StageEnv env_;
  std::string sequencer_name_;
  bool network_ = false;
  bool reliable_ = false;
  std::uint64_t hold_ns_ = 50'000'000;
  std::uint64_t flush_ns_ = 100'000;
  std::uint32_t window_ = 4096;

  // View.
  std::uint64_t view_id_ = 0;
  int seq_slot_ = kNoSlot;
  bool i_sequence_ = false;

  // The parts (see the file map above).
  MsgTable table_;
  MemberSequencer seq_;
  NetworkSequencer net_;
  Agreement agreement_;

  std::uint64_t own_seq_ = 0;   ///< the last per-sender number ordering.seq gave our data
  StageTimer timer_;  ///< armed at the earliest of the parts' deadlines

  // Reliable mode: the term's sequencer role and the failover in progress (failover.cpp).
  bool term_heard_ = false;  ///< an announcement of the current term arrived (or we sequence it)
  Role role_ = Role::follower;
  bool order_blocked_ = false;
  MemberSet start_mask_;  ///< the receivers our term start went to
  std::vector<gw::Cutoff> merged_;  ///< scratch of try_collect(): the term start's cut-offs (cold)
  MemberSet prev_rx_;
  std::vector<std::uint32_t> prev_outages_;  ///< per slot, MemberInfo::outages at the last view
  // Our own undelivered messages, watched for progress (check_own_progress).
  std::uint64_t own_check_at_ = 0;  ///< the next check (0 = none armed)
  std::uint64_t own_check_ns_ = 0;  ///< the current spacing of checks (backs off)
  std::uint64_t own_oldest_ = 0;    ///< our oldest undelivered number at the last check
};

}  // namespace tmc::detail::group_order
