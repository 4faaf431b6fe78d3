// The paper's Listing 1 in C++, then two-phase commit over it.
//
// Listing 1 (Python, from the paper):
//
//    1. from libTMC import Channel
//    3. c = Channel({
//    4.     'id': '2PC',
//    5.     'group': '239.0.0.2',
//    6.     'group ordering': True,
//    7. })
//    9. c.send(handshake_msg, {'reliability': True})
//   10. c.update({'error checking': True})
//   11. c.send(beacon_msg)
//
// The compiler gives a 'group ordering' channel the group-ordering stage (a sequencer
// member announces one order that every member, the sender included, delivers in), a
// reliability stage in "flagged" mode (only messages sent with per-message reliability are
// acknowledged and repaired) and the membership stage. So line 9's handshake is reliable
// and this program prints its outcome: which members acknowledged it.
//
// Beyond the paper's lines, each member names itself and the group's members ('name',
// 'members'): deployment facts, not guarantees. Naming the members puts them into the
// membership view from the start, so "acknowledged by every member" means both participants
// even before their first heartbeat arrives.
//
// The 2PC rounds send PREPARE, the votes and the decision with per-message reliability.
// Group ordering makes every member deliver every message (votes included) in one order;
// the program checks that both participants' delivery logs are identical.
//
// The three members run in one process, each on its own Runtime (its own loop thread and
// socket), which stands in for three processes.
//
//   tmc-2pc [--port P] [--manifest examples/manifests/2pc.yaml]
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <tmc/channel.hpp>
#include <tmc/diagnostics.hpp>
#include <tmc/group.hpp>
#include <tmc/manifest.hpp>

namespace {

using namespace std::chrono_literals;

const char* const kMemberNames[] = {"coordinator", "participant-1", "participant-2"};

std::string indent(const std::string& text) {
  std::string out = "    ";
  for (char ch : text) {
    out += ch;
    if (ch == '\n') out += "    ";
  }
  while (!out.empty() && (out.back() == ' ' || out.back() == '\n')) out.pop_back();
  return out + "\n";
}

/// Listing 1's manifest (lines 3-7), as the map the Python layer passes, or as loaded from
/// the YAML file; then this member's name, the members and the port.
tmc::Manifest manifest_for(const tmc::Manifest* from_file, int port, const std::string& name) {
  tmc::Manifest base;
  tmc::Diagnostics diag;
  if (from_file != nullptr) {
    base = *from_file;
  } else if (!tmc::manifest_from_value(tmc::Value(tmc::Value::Map{
                                           {"id", "2PC"},
                                           {"group", "239.0.0.2"},
                                           {"group ordering", true},
                                       }),
                                       base, diag)) {
    throw tmc::Error(tmc::Status(tmc::Code::INVALID_MANIFEST, diag.to_string()));
  }
  tmc::Manifest out;
  const tmc::Value deployment(tmc::Value::Map{
      {"name", name},
      {"members", tmc::Value::List{kMemberNames[0], kMemberNames[1], kMemberNames[2]}},
      {"port", port},
  });
  if (!tmc::update_manifest(base, deployment, out, diag)) {
    throw tmc::Error(tmc::Status(tmc::Code::INVALID_MANIFEST, diag.to_string()));
  }
  return out;
}

tmc::MessageManifest reliably() {
  tmc::MessageManifest m;
  m.reliability = true;
  return m;
}

std::string describe(const tmc::DeliveryOutcome& o) {
  std::string s(tmc::delivery_state_name(o.state));
  auto list = [&s](const char* label, const std::vector<std::string>& names) {
    if (names.empty()) return;
    s += std::string(", ") + label + ":";
    for (const auto& n : names) s += " " + n;
  };
  list("acked by", o.acked);
  list("missing", o.missing);
  return s;
}

/// A reliable send whose outcome is awaited and printed; true when every member acked.
bool send_reliably(tmc::Channel& c, const std::string& text) {
  std::future<tmc::DeliveryOutcome> outcome;
  const std::span<const std::uint8_t> bytes(reinterpret_cast<const std::uint8_t*>(text.data()), text.size());
  const tmc::Status st = c.send(bytes, reliably(), &outcome);
  if (!st) {
    std::printf("  send \"%s\" failed: %s\n", text.c_str(), st.to_string().c_str());
    return false;
  }
  const tmc::DeliveryOutcome o = outcome.get();  // bounded by the retry budget
  std::printf("  sent \"%s\": %s\n", text.c_str(), describe(o).c_str());
  return o.state == tmc::DeliveryOutcome::State::met;
}

/// A participant: answers the handshake, votes YES on PREPARE, logs everything it delivers.
class Participant {
 public:
  Participant(const tmc::Manifest& m) {
    tmc::OpenOptions opts;
    opts.runtime = tmc::Runtime::create();
    ch_ = tmc::Channel::open(m, opts);
    name_ = ch_.name();
    ch_.on_message([this](tmc::Message&& msg) { on_message(msg); });
  }
  tmc::Channel& channel() { return ch_; }
  std::vector<std::string> log() {
    std::lock_guard<std::mutex> lk(mu_);
    return log_;
  }

 private:
  void on_message(const tmc::Message& m) {
    const std::string text(m.text());
    {
      std::lock_guard<std::mutex> lk(mu_);
      log_.push_back(m.sender + ": " + text);
    }
    if (m.sender != "coordinator") return;  // votes (ours and the other's) need no answer
    std::string reply;
    if (text.rfind("HELLO", 0) == 0) {
      reply = "HELLO-ACK " + name_;
    } else if (text.rfind("PREPARE ", 0) == 0) {
      reply = "VOTE " + text.substr(8) + " YES " + name_;
    }
    // From the handler a send is queued and goes out right after it returns.
    if (!reply.empty()) (void)ch_.send(reply, reliably());
  }

  std::string name_;
  tmc::Channel ch_;
  std::mutex mu_;
  std::vector<std::string> log_;
};

/// Waits on the coordinator's channel for one message per participant starting with `prefix`
/// (the coordinator delivers its own messages too: group ordering includes the sender).
bool collect(tmc::Channel& c, const std::string& prefix, std::size_t want, std::vector<std::string>& got) {
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (got.size() < want && std::chrono::steady_clock::now() < deadline) {
    auto m = c.receive(100ms);
    if (!m) continue;
    const std::string text(m->text());
    if (text.rfind(prefix, 0) == 0) got.push_back(text + "   (from " + m->sender + ")");
  }
  return got.size() == want;
}

}  // namespace

int main(int argc, char** argv) {
  int port = 4747;
  std::string manifest_file;
  for (int i = 1; i < argc; i += 2) {
    const std::string a = argv[i];
    if (i + 1 < argc && a == "--port") {
      port = std::atoi(argv[i + 1]);
    } else if (i + 1 < argc && a == "--manifest") {
      manifest_file = argv[i + 1];
    } else {
      std::fprintf(stderr, "usage: %s [--port P] [--manifest 2pc.yaml]\n", argv[0]);
      return 2;
    }
  }
  if (port <= 0 || port > 65535) {
    std::fprintf(stderr, "%s: --port must be in 1..65535\n", argv[0]);
    return 2;
  }
  tmc::Manifest from_file;
  if (!manifest_file.empty()) {
    tmc::Diagnostics diag;
    if (!tmc::load_manifest(manifest_file, from_file, diag)) {
      std::fprintf(stderr, "%s: %s\n", argv[0], diag.to_string().c_str());
      return 2;
    }
  }
  const tmc::Manifest* file = manifest_file.empty() ? nullptr : &from_file;
  int failures = 0;

  try {
    // --- Listing 1, lines 3-7, on every member ----------------------------------------
    std::printf("Listing 1, lines 3-7: Channel({'id': '2PC', 'group': '239.0.0.2', 'group ordering': True})%s%s\n",
                file != nullptr ? "  from " : "", manifest_file.c_str());
    Participant p1(manifest_for(file, port, kMemberNames[1]));
    Participant p2(manifest_for(file, port, kMemberNames[2]));
    tmc::OpenOptions coord_opts;
    coord_opts.runtime = tmc::Runtime::create();
    tmc::Channel c = tmc::Channel::open(manifest_for(file, port, kMemberNames[0]), coord_opts);
    std::printf("%s", indent(c.plan().to_string()).c_str());
    if (tmc::Status st = c.wait_for_members(2, 5s); !st) {
      std::printf("  %s\n", st.to_string().c_str());
      ++failures;
    }
    std::printf("  membership view:");
    for (const auto& m : c.view()) {
      std::printf(" %s (%s%s)", m.name.c_str(), std::string(tmc::member_state_name(m.state)).c_str(),
                  m.self ? ", self" : "");
    }
    std::printf("\n");

    // --- Listing 1, line 9 ------------------------------------------------------------
    std::printf("\nListing 1, line 9: c.send(handshake_msg, {'reliability': True})\n");
    if (!send_reliably(c, "HELLO from coordinator")) ++failures;
    std::vector<std::string> acks;
    if (!collect(c, "HELLO-ACK", 2, acks)) ++failures;
    for (const auto& a : acks) std::printf("  coordinator got: %s\n", a.c_str());

    // --- Listing 1, line 10: every member, so that all of them check the CRC32C trailer --
    std::printf("\nListing 1, line 10: c.update({'error checking': True})  (on every member)\n");
    const tmc::Value ec(tmc::Value::Map{{"error checking", true}});
    for (tmc::Channel* ch : {&c, &p1.channel(), &p2.channel()}) {
      if (tmc::Status st = ch->update(ec); !st) {
        std::printf("  update failed: %s\n", st.to_string().c_str());
        ++failures;
      }
    }
    std::printf("  coordinator's stages now:");
    for (const auto& k : c.plan().software_kinds()) std::printf(" %s", k.c_str());
    std::printf("\n");
    if (tmc::Status st = c.wait_for_members(2, 5s); !st) {
      std::printf("  %s\n", st.to_string().c_str());
      ++failures;
    }

    // --- Listing 1, line 11 -----------------------------------------------------------
    std::printf("\nListing 1, line 11: c.send(beacon_msg)\n");
    if (tmc::Status st = c.send("BEACON epoch=1"); st) {
      std::printf("  sent\n");
    } else {
      std::printf("  %s\n", st.to_string().c_str());
      ++failures;
    }

    // --- Two-phase commit -------------------------------------------------------------
    std::printf("\nTwo-phase commit, two transactions (PREPARE, votes and decision sent reliably):\n");
    for (int tx = 1; tx <= 2; ++tx) {
      const std::string id = "tx" + std::to_string(tx);
      if (!send_reliably(c, "PREPARE " + id)) ++failures;
      std::vector<std::string> votes;
      const bool all = collect(c, "VOTE " + id, 2, votes);
      for (const auto& v : votes) std::printf("  coordinator got: %s\n", v.c_str());
      if (!all) {
        std::printf("  %zu of 2 votes arrived although they were sent reliably: aborting\n", votes.size());
        ++failures;
      }
      if (!send_reliably(c, (all ? "COMMIT " : "ABORT ") + id)) ++failures;
    }

    // An acknowledgment says a participant's reliability stage has the message; group
    // ordering may still hold it until the sequencer's announcement comes. So wait until
    // both participants have delivered the last decision before comparing.
    const std::string last = "coordinator: COMMIT tx2";
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    auto delivered_last = [&last](Participant& p) {
      const std::vector<std::string> l = p.log();
      return !l.empty() && l.back() == last;
    };
    while (!(delivered_last(p1) && delivered_last(p2)) && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(10ms);
    }
    std::printf("\nWhat each participant delivered, in order (group ordering: the same for both):\n");
    const std::vector<std::string> log1 = p1.log();
    const std::vector<std::string> log2 = p2.log();
    for (Participant* p : {&p1, &p2}) {
      std::printf("  %s:\n", p->channel().name().c_str());
      for (const auto& line : p->log()) std::printf("    %s\n", line.c_str());
    }
    if (log1 != log2) {
      std::printf("  the participants delivered different sequences\n");
      ++failures;
    }
    const tmc::ChannelStats s = c.stats();
    std::printf("\ncoordinator: sent %llu, delivered %llu (its own included), reliable met %llu, failed %llu\n",
                static_cast<unsigned long long>(s.messages_sent),
                static_cast<unsigned long long>(s.messages_delivered),
                static_cast<unsigned long long>(s.counter("reliability.met")),
                static_cast<unsigned long long>(s.counter("reliability.failed")));
    p1.channel().on_message(nullptr);
    p2.channel().on_message(nullptr);
    c.close();
    p1.channel().close();
    p2.channel().close();
  } catch (const tmc::Error& e) {
    std::printf("FAILED: %s\n", e.what());
    return 1;
  }
  std::printf("\n%s\n", failures == 0 ? "OK: Listing 1 ran as printed and both transactions committed."
                                      : "FAILED: see above.");
  return failures == 0 ? 0 : 1;
}
