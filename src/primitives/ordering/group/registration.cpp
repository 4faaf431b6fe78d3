// ordering.group's entry in the stage registry: its documentation, parameters (ranges
// included: the registry validates them) and counters (declared once in table.hpp).
#include <memory>

#include "primitives/ordering/group/stage.hpp"
#include "tmc/stage.hpp"

namespace tmc {

using detail::group_order::GroupStage;
using detail::group_order::kCounters;
using detail::group_order::kKind;

void register_ordering_group(Registry& r) {
  (void)r.add(StageInfo{
      .kind = kKind,
      .synopsis = "Group ordering: a sequencer (a member, or the network) assigns a global order every member "
                  "delivers in, its own messages included.",
      .notes =
          "Needs ordering.seq below (messages are named by sender, epoch and per-sender number). Member "
          "sequencer: the sequencer orders each sender's messages in per-sender order, in arrival order across "
          "senders, and multicasts batched announcements (control packets with extension `order`, body u32 "
          "count; payload entries {u32 sender, u32 epoch, u64 seq, u64 global}, 24 bytes each, flagged "
          "reliable when `reliable` is set). Members deliver by global number, their own messages from a clone "
          "kept at send. Network sequencer (`network_sequencer` set, the paper's OUM): data is unicast to "
          "tmc-sequencer, which multicasts it with extension `group_seq` (u64 global, u32 session; 14 bytes); "
          "unreliable, a new session means the sequencer restarted: what is held is delivered, "
          "`sequencer_changed` raised. Network sequencer with `reliable`: the session is a term like a member "
          "sequencer's, delivered stably; when the sequencer restarts (a new session), stops returning a "
          "member's own messages (8 requests, about 1 s), or a receiver fails, the members cut its term as "
          "below and a member sequencer takes over for good (`net_failovers`); what reliability still "
          "repairs toward the sequencer's address goes to the group from then on. Unreliable: a gap open for `hold_us` is skipped and reported (`gap_skipped`, in global numbers, "
          "sender/epoch naming the term), data never announced within 4 x hold_us is dropped and reported "
          "(`gap_skipped` with its own sender/epoch/seq); no two members deliver two messages in different "
          "relative orders while they follow the same sequencer term; a sequencer change starts a new term (old "
          "term drained in order, gaps skipped). Reliable (needs reliability.arq acked by all and "
          "membership.heartbeat below): nothing is skipped by time; a message is delivered only once it is "
          "stable (every receiver of the view holds it and everything before it, per unreliable status packets, "
          "`order` body type 2); when the view loses the sequencer or a receiver, members freeze the term, the "
          "view's sequencer collects every receiver's frozen status, cuts the old term at the least held point "
          "and starts a new term (reliable term start, type 3, with the cuts and per-sender cut-offs); "
          "everything after the cut from alive senders is re-sequenced, a failed sender's messages after it "
          "are dropped, and members re-send their own undelivered messages (8-byte `order` body). Members that "
          "stay connected deliver identical sequences across sequencer failures. Data flagged unordered is "
          "delivered at once.",
      .params = {{.name = "sequencer",
                  .type = ParamType::string,
                  .default_value = "",
                  .doc = "Member name of the sequencer; empty: the smallest name among this member and the view's "
                         "alive or expected members."},
                 {.name = "network_sequencer",
                  .type = ParamType::string,
                  .default_value = "",
                  .doc = "\"ip:port\" of an in-network sequencer (tmc-sequencer); empty: a member sequences."},
                 {.name = "reliable",
                  .type = ParamType::boolean,
                  .default_value = "false",
                  .doc = "reliability.arq (ack from all) and membership.heartbeat sit below: stable delivery, "
                         "sequencer failover with agreement, nothing skipped by time."},
                 {.name = "hold_us",
                  .type = ParamType::integer,
                  .default_value = "50000",
                  .doc = "Unreliable: how long a gap in the global order may stay open before it is skipped, in us.",
                  .min = 1,
                  .max = 3'600'000'000},
                 {.name = "window",
                  .type = ParamType::integer,
                  .default_value = "4096",
                  .doc = "Global numbers held ahead of the next to deliver (2 x window messages may wait for order).",
                  .min = 1,
                  .max = 1 << 20},
                 {.name = "flush_us",
                  .type = ParamType::integer,
                  .default_value = "100",
                  .doc = "Sequencer: longest an order entry waits to share an announcement, in us.",
                  .min = 0,
                  .max = 1'000'000}},
      .counters = counter_list(kCounters),
      .factory = [] { return std::make_unique<GroupStage>(); },
      .serves = "group_ordering",
      .requires_below = {"ordering.seq", "membership.heartbeat"},
      .per_message = true,
      .extensions = {{.type = static_cast<std::uint8_t>(wire::Ext::group_seq),
                      .name = "group_seq",
                      .body_bytes = 12,
                      .carried_on = "data stamped by the network sequencer (`tmc-sequencer` writes it)",
                      .body = "u64 global sequence number, u32 session (random per sequencer start) (12 bytes)"},
                     {.type = static_cast<std::uint8_t>(wire::Ext::order),
                      .name = "order",
                      .body_bytes = 0,
                      .carried_on = "kind control (member sequencer)",
                      .body = "announcements, ordering status, term starts, re-sent messages: see [Group "
                              "ordering](#group-ordering-orderinggroup)"}},
  });
}

}  // namespace tmc
