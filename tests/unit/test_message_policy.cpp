// The per-message manifest policy: every branch of what send(msg, {...}) turns into.
#include <doctest/doctest.h>

#include "runtime/channel/message_policy.hpp"
#include "runtime/channel/traits_cell.hpp"
#include "tmc/wire.hpp"

using namespace tmc;
using tmc::detail::message_flags;
using tmc::detail::MessageFlags;

namespace {

ChannelTraits reliable(ReliabilityScope scope) {
  ChannelTraits t;
  t.reliability = scope;
  return t;
}

ChannelTraits fifo(bool flagged) {
  ChannelTraits t;
  t.point_to_point_ordering = FifoOrdering::strict;
  t.ordered_flagged = flagged;
  return t;
}

/// The flags of a message on `t`, which must be accepted.
MessageFlags accepted(const ChannelTraits& t, const MessageManifest* m) {
  MessageFlags f;
  f.wire = 0xFFFF;  // overwritten on success
  const Status s = message_flags(t, m, f);
  INFO(s.to_string());
  REQUIRE(s.is_ok());
  return f;
}

/// The refusal of a message on `t`, which leaves `out` as it was.
Status refused(const ChannelTraits& t, const MessageManifest& m) {
  MessageFlags f{0x1234, true};
  const Status s = message_flags(t, &m, f);
  CHECK(s.code() == Code::NOT_AVAILABLE);
  CHECK(f == MessageFlags{0x1234, true});
  return s;
}

bool mentions(const Status& s, std::string_view text) { return s.message().find(text) != std::string::npos; }

}  // namespace

TEST_CASE("message policy: no per-message manifest takes the channel's defaults") {
  CHECK(accepted(ChannelTraits{}, nullptr) == MessageFlags{0, false});
  CHECK(accepted(reliable(ReliabilityScope::flagged), nullptr) == MessageFlags{0, false});
  CHECK(accepted(reliable(ReliabilityScope::all), nullptr) == MessageFlags{0, true});
  CHECK(accepted(fifo(false), nullptr) == MessageFlags{0, false});
  // 'ordered messages: flagged': unordered unless the message opts in.
  CHECK(accepted(fifo(true), nullptr) == MessageFlags{wire::kFlagUnordered, false});
  // An empty per-message manifest is the same as none.
  const MessageManifest empty;
  CHECK(accepted(fifo(true), &empty) == MessageFlags{wire::kFlagUnordered, false});
  CHECK(accepted(reliable(ReliabilityScope::all), &empty) == MessageFlags{0, true});
}

TEST_CASE("message policy: per-message reliability") {
  MessageManifest yes;
  yes.reliability = true;
  MessageManifest no;
  no.reliability = false;

  SUBCASE("refused without a reliability stage, either way") {
    const Status s = refused(ChannelTraits{}, yes);
    CHECK(mentions(s, "per-message reliability needs the reliability stage"));
    CHECK(mentions(s, "'reliability: {messages: flagged}'"));
    CHECK(mentions(refused(ChannelTraits{}, no), "per-message reliability needs the reliability stage"));
  }
  SUBCASE("flagged: the message chooses") {
    CHECK(accepted(reliable(ReliabilityScope::flagged), &yes) == MessageFlags{wire::kFlagReliable, true});
    CHECK(accepted(reliable(ReliabilityScope::flagged), &no) == MessageFlags{0, false});
  }
  SUBCASE("all: every message is acknowledged; opting in is redundant, opting out refused") {
    CHECK(accepted(reliable(ReliabilityScope::all), &yes) == MessageFlags{wire::kFlagReliable, true});
    const Status s = refused(reliable(ReliabilityScope::all), no);
    CHECK(mentions(s, "acknowledges every message; opting one out of reliability is not available"));
  }
}

TEST_CASE("message policy: per-message error checking must agree with the channel's") {
  MessageManifest yes;
  yes.error_checking = true;
  MessageManifest no;
  no.error_checking = false;
  ChannelTraits checked;
  checked.error_checking = true;

  CHECK(accepted(checked, &yes) == MessageFlags{0, false});
  CHECK(accepted(ChannelTraits{}, &no) == MessageFlags{0, false});
  CHECK(mentions(refused(ChannelTraits{}, yes), "enable 'error checking' for the channel"));
  CHECK(mentions(refused(checked, no), "opting one message out of error checking is not available yet"));
}

TEST_CASE("message policy: per-message ordering") {
  MessageManifest yes;
  yes.ordered = true;
  MessageManifest no;
  no.ordered = false;

  SUBCASE("opting in needs ordering in the plan") {
    const Status s = refused(ChannelTraits{}, yes);
    CHECK(mentions(s, "'ordered: true' needs ordering in the channel's plan"));
  }
  SUBCASE("opting out is always possible, and marks the message unordered") {
    CHECK(accepted(ChannelTraits{}, &no) == MessageFlags{wire::kFlagUnordered, false});
    CHECK(accepted(fifo(false), &no) == MessageFlags{wire::kFlagUnordered, false});
  }
  SUBCASE("on an ordered channel opting in is the default") {
    CHECK(accepted(fifo(false), &yes) == MessageFlags{0, false});
  }
  SUBCASE("'ordered messages: flagged': opting in clears the default unordered flag") {
    CHECK(accepted(fifo(true), &yes) == MessageFlags{0, false});
    CHECK(accepted(fifo(true), &no) == MessageFlags{wire::kFlagUnordered, false});
  }
  SUBCASE("group ordering counts as ordering") {
    ChannelTraits g;
    g.group_ordering = true;
    g.ordered_flagged = true;
    CHECK(accepted(g, nullptr) == MessageFlags{wire::kFlagUnordered, false});
    CHECK(accepted(g, &yes) == MessageFlags{0, false});
  }
}

TEST_CASE("message policy: properties combine; the first refusal names its property") {
  ChannelTraits t = fifo(true);
  t.reliability = ReliabilityScope::flagged;
  t.error_checking = true;
  MessageManifest all;
  all.reliability = true;
  all.error_checking = true;
  all.ordered = true;
  CHECK(accepted(t, &all) == MessageFlags{wire::kFlagReliable, true});

  all.ordered = false;
  CHECK(accepted(t, &all) == MessageFlags{wire::kFlagReliable | wire::kFlagUnordered, true});

  // Reliability is looked at first, then error checking, then ordering.
  MessageManifest bad;
  bad.reliability = true;
  bad.error_checking = false;
  bad.ordered = true;
  CHECK(mentions(refused(ChannelTraits{}, bad), "per-message reliability"));
  bad.reliability.reset();
  CHECK(mentions(refused(t, bad), "error checking"));
  bad.error_checking.reset();
  CHECK(mentions(refused(ChannelTraits{}, bad), "'ordered: true'"));
}

TEST_CASE("traits cell: what install() publishes is what send() reads") {
  using tmc::detail::TraitsCell;
  ChannelTraits t;
  TraitsCell cell;
  CHECK(cell.load() == t);
  t.reliability = ReliabilityScope::all;
  t.point_to_point_ordering = FifoOrdering::drop_stale;
  t.group_ordering = true;
  t.network_sequenced = true;
  t.ordered_flagged = true;
  t.error_checking = true;
  t.coalescing = true;
  t.membership = true;
  t.fragment_bytes = 0xFFFFFFFFu;
  t.max_message_bytes = std::uint64_t{1} << 40;
  cell.store(t);
  CHECK(cell.load() == t);
  // Each field on its own, so that no two share a bit.
  for (int field = 0; field < 10; ++field) {
    ChannelTraits one;
    switch (field) {
      case 0: one.reliability = ReliabilityScope::flagged; break;
      case 1: one.point_to_point_ordering = FifoOrdering::strict; break;
      case 2: one.group_ordering = true; break;
      case 3: one.network_sequenced = true; break;
      case 4: one.ordered_flagged = true; break;
      case 5: one.error_checking = true; break;
      case 6: one.coalescing = true; break;
      case 7: one.membership = true; break;
      case 8: one.fragment_bytes = 1; break;
      default: one.max_message_bytes = 1; break;
    }
    cell.store(one);
    CHECK(cell.load() == one);
  }
}
