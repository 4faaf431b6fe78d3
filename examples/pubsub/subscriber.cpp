// Pub/sub fan-out, a subscriber: receives quotes until the publisher's end marker (or until
// nothing arrives for --idle seconds), then prints what it got and what it missed.
//
//   tmc-pubsub-subscriber [--manifest quotes.yaml] [--name NAME] [--idle 5] [--port P]
//                         [--interface IF]
//
// Exit status: 0 when it received quotes and the end marker, 1 otherwise.
#include <chrono>
#include <cstring>
#include <set>

#include <tmc/channel.hpp>

#include "common.hpp"

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // one line at a time, also into a pipe
  std::string manifest_path = TMC_PUBSUB_MANIFEST;
  std::string interface;
  std::string name = "subscriber";
  double idle_s = 5;
  int port = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    const char* v = argv[i + 1];
    if (a == "--manifest") manifest_path = v;
    else if (a == "--name") name = v;
    else if (a == "--idle") idle_s = std::atof(v);
    else if (a == "--port") port = std::atoi(v);
    else if (a == "--interface") interface = v;
    else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }
  tmc::Manifest m;
  if (!pubsub::load(manifest_path, port, interface, m)) return 1;
  m.name = name;
  m.duplexity = tmc::Duplexity::receive_only;  // a subscriber never publishes

  tmc::Channel c;
  if (tmc::Status st = tmc::Channel::try_open(m, {}, c); !st) {
    std::fprintf(stderr, "%s: %s\n", name.c_str(), st.to_string().c_str());
    return 1;
  }
  std::printf("%s: subscribed to '%s'\n", name.c_str(), m.id.c_str());
  std::fflush(stdout);

  std::set<long> seen;
  long expected = -1;
  const auto idle = std::chrono::duration<double>(idle_s);
  for (;;) {
    tmc::Message msg;
    const tmc::Status st = c.receive(msg, std::chrono::duration_cast<std::chrono::nanoseconds>(idle));
    if (st.code() == tmc::Code::TIMED_OUT) break;
    if (!st) {
      std::fprintf(stderr, "%s: receive: %s\n", name.c_str(), st.to_string().c_str());
      return 1;
    }
    const std::string text(msg.text());
    long n = 0;
    if (std::sscanf(text.c_str(), "end %ld", &n) == 1) {
      expected = n;
      break;
    }
    if (std::sscanf(text.c_str(), "quote %ld", &n) == 1) {
      if (seen.size() < 3) std::printf("%s: %s\n", name.c_str(), text.c_str());
      seen.insert(n);
    }
  }
  const tmc::ChannelStats s = c.stats();
  c.close();
  if (expected < 0) {
    std::printf("%s: %zu quotes, no end marker (publisher gone or marker lost)\n", name.c_str(), seen.size());
    return 1;
  }
  std::printf("%s: %zu of %ld quotes (%.1f%% missed), %llu dropped as damaged\n", name.c_str(), seen.size(), expected,
              expected > 0 ? 100.0 * static_cast<double>(expected - static_cast<long>(seen.size())) / static_cast<double>(expected) : 0.0,
              static_cast<unsigned long long>(s.drop_count(tmc::DropReason::checksum)));
  return seen.empty() ? 1 : 0;
}
