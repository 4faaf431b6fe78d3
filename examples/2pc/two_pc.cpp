// The paper's Listing 1 in C++, then a small two-phase commit over the parts of it that
// libTMC provides today.
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
// Group ordering (line 6) and reliability (line 9) are not built yet. This program shows
// the NOT_AVAILABLE error that line 3 gets, verbatim, and the one line 9 gets; then it
// opens the channel without group ordering and runs lines 10-11 and a two-phase commit
// (PREPARE, votes, COMMIT) between a coordinator and two participants. Without
// reliability a lost datagram would stall a round; this program gives up on a round after
// a timeout and says so rather than pretending. Without group ordering the participants
// could, in general, see two coordinators' messages in different orders; with one
// coordinator, point-to-point ordering is what 2PC needs and what the channel uses here.
//
// The three members run in one process, each on its own Runtime (its own loop thread and
// socket), which stands in for three processes.
//
//   tmc-2pc [--port P] [--manifest examples/manifests/2pc.yaml]
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <tmc/channel.hpp>

namespace {

using namespace std::chrono_literals;

void say(const char* fmt, const std::string& s) { std::printf(fmt, s.c_str()); }

std::string indent(const std::string& text) {
  std::string out = "    ";
  for (char ch : text) {
    out += ch;
    if (ch == '\n') out += "    ";
  }
  while (!out.empty() && (out.back() == ' ' || out.back() == '\n')) out.pop_back();
  return out + "\n";
}

/// Listing 1's manifest as the map the Python layer would pass (keys as the paper writes them).
tmc::Value listing1_manifest(int port) {
  return tmc::Value(tmc::Value::Map{
      {"id", "2PC"},
      {"group", "239.0.0.2"},
      {"port", port},
      {"group ordering", true},
  });
}

/// What runs today: Listing 1 without group ordering, with point-to-point ordering.
tmc::Value working_manifest(int port, const std::string& name) {
  return tmc::Value(tmc::Value::Map{
      {"id", "2PC"},
      {"name", name},
      {"members", tmc::Value::List{"coordinator", "participant-1", "participant-2"}},
      {"group", "239.0.0.2"},
      {"port", port},
      {"point-to-point ordering", true},
  });
}

/// A participant: votes YES on PREPARE, applies COMMIT/ABORT, answers the handshake.
class Participant {
 public:
  Participant(const std::string& name, int port) : name_(name) {
    tmc::OpenOptions opts;
    opts.runtime = tmc::Runtime::create();
    ch_ = tmc::Channel::open(working_manifest(port, name), opts);
    ch_.on_message([this](tmc::Message&& m) { on_message(m); });
  }
  tmc::Channel& channel() { return ch_; }
  std::vector<std::string> log() {
    std::lock_guard<std::mutex> lk(mu_);
    return log_;
  }

 private:
  void on_message(const tmc::Message& m) {
    const std::string text(m.text());
    if (m.sender != "coordinator") return;  // the other participant's votes are not for us
    std::string reply;
    if (text.rfind("HELLO", 0) == 0) {
      reply = "HELLO-ACK " + name_;
    } else if (text.rfind("BEACON", 0) == 0) {
      // Nothing to answer; it is logged below.
    } else if (text.rfind("PREPARE ", 0) == 0) {
      reply = "VOTE " + text.substr(8) + " YES " + name_;
    } else if (text.rfind("COMMIT ", 0) == 0 || text.rfind("ABORT ", 0) == 0) {
      // Applied; logged below.
    }
    {
      std::lock_guard<std::mutex> lk(mu_);
      log_.push_back(text);
    }
    if (!reply.empty()) (void)ch_.send(reply);  // from the handler: queued, sent right after
  }

  std::string name_;
  tmc::Channel ch_;
  std::mutex mu_;
  std::vector<std::string> log_;
};

/// Waits on the coordinator's channel for one message per participant starting with `prefix`.
bool collect(tmc::Channel& c, const std::string& prefix, std::size_t want, std::vector<std::string>& got) {
  const auto deadline = std::chrono::steady_clock::now() + 2s;
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
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--port") {
      port = std::atoi(argv[i + 1]);
    } else if (a == "--manifest") {
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
  int failures = 0;

  // --- Listing 1, lines 3-7 -------------------------------------------------------------
  std::printf("Listing 1, lines 3-7: Channel({'id': '2PC', 'group': '239.0.0.2', 'group ordering': True})\n");
  {
    tmc::Channel c;
    const tmc::Status st = tmc::Channel::try_open(listing1_manifest(port), {}, c);
    if (st.code() == tmc::Code::NOT_AVAILABLE) {
      say("  refused, as it must be today:\n%s", indent(st.to_string()));
    } else {
      std::printf("  UNEXPECTED: opening Listing 1's channel gave %s\n", st.to_string().c_str());
      ++failures;
    }
  }
  if (!manifest_file.empty()) {
    tmc::Channel c;
    const tmc::Status st = tmc::Channel::try_open_yaml_file(manifest_file, {}, c);
    say("  the same manifest from %s:\n", manifest_file);
    say("%s", indent(st.to_string()));
    if (st.code() != tmc::Code::NOT_AVAILABLE) ++failures;
  }

  // --- what runs today -------------------------------------------------------------------
  std::printf("\nWithout 'group ordering' (point-to-point ordering instead), three members:\n");
  tmc::OpenOptions coord_opts;
  coord_opts.runtime = tmc::Runtime::create();
  tmc::Channel c = tmc::Channel::open(working_manifest(port, "coordinator"), coord_opts);
  Participant p1("participant-1", port);
  Participant p2("participant-2", port);
  say("%s", indent(c.plan().to_string()));

  // Listing 1, line 9.
  std::printf("\nListing 1, line 9: c.send(handshake_msg, {'reliability': True})\n");
  tmc::MessageManifest reliable;
  reliable.reliability = true;
  tmc::Status st = c.send("HELLO from coordinator", reliable);
  if (st.code() == tmc::Code::NOT_AVAILABLE) {
    say("  refused:\n%s", indent(st.to_string()));
  } else {
    std::printf("  UNEXPECTED: %s\n", st.to_string().c_str());
    ++failures;
  }
  std::printf("  sending the handshake best effort instead\n");
  (void)c.send("HELLO from coordinator");
  std::vector<std::string> acks;
  if (!collect(c, "HELLO-ACK", 2, acks)) {
    std::printf("  only %zu of 2 handshake acks arrived (no reliability: a datagram was lost)\n", acks.size());
    ++failures;
  }
  for (const auto& a : acks) std::printf("  coordinator got: %s\n", a.c_str());

  // Listing 1, line 10: every member updates, so that all of them check the CRC32C trailer.
  std::printf("\nListing 1, line 10: c.update({'error checking': True})  (on every member)\n");
  const tmc::Value ec(tmc::Value::Map{{"error checking", true}});
  for (tmc::Channel* ch : {&c, &p1.channel(), &p2.channel()}) {
    st = ch->update(ec);
    if (!st) {
      std::printf("  update failed: %s\n", st.to_string().c_str());
      ++failures;
    }
  }
  std::printf("  coordinator's stages now:");
  for (const auto& k : c.plan().software_kinds()) std::printf(" %s", k.c_str());
  std::printf("\n");

  // Listing 1, line 11.
  std::printf("\nListing 1, line 11: c.send(beacon_msg)\n");
  st = c.send("BEACON epoch=1");
  std::printf("  %s\n", st ? "sent" : st.to_string().c_str());
  if (!st) ++failures;

  // Two-phase commit rounds.
  std::printf("\nTwo-phase commit, two transactions:\n");
  for (int tx = 1; tx <= 2; ++tx) {
    const std::string id = "tx" + std::to_string(tx);
    (void)c.send("PREPARE " + id);
    std::vector<std::string> votes;
    const bool all = collect(c, "VOTE " + id, 2, votes);
    for (const auto& v : votes) std::printf("  coordinator got: %s\n", v.c_str());
    const std::string decision = (all ? "COMMIT " : "ABORT ") + id;
    if (!all) {
      std::printf("  %zu of 2 votes within 2 s: aborting (without reliability a lost vote looks like a no)\n",
                  votes.size());
      ++failures;
    }
    (void)c.send(decision);
    std::printf("  coordinator decided: %s\n", decision.c_str());
  }
  std::this_thread::sleep_for(200ms);  // let the last decision arrive before reporting

  std::printf("\nWhat each participant saw, in delivery order:\n");
  for (Participant* p : {&p1, &p2}) {
    std::printf("  %s:", p->channel().name().c_str());
    for (const auto& line : p->log()) std::printf(" [%s]", line.c_str());
    std::printf("\n");
  }
  const tmc::ChannelStats s = c.stats();
  std::printf("\ncoordinator counters: sent %llu, delivered %llu, datagrams received %llu (own copies included)\n",
              static_cast<unsigned long long>(s.messages_sent), static_cast<unsigned long long>(s.messages_delivered),
              static_cast<unsigned long long>(s.datagrams_received));
  p1.channel().on_message(nullptr);
  p2.channel().on_message(nullptr);
  c.close();
  p1.channel().close();
  p2.channel().close();
  std::printf("\n%s\n", failures == 0 ? "OK: Listing 1 refused where it must be; everything else ran."
                                      : "FAILED: see above.");
  return failures == 0 ? 0 : 1;
}
