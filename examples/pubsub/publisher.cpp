// Pub/sub fan-out, the publisher: sends N stock quotes to the group, then an end marker.
//
//   tmc-pubsub-publisher [--manifest quotes.yaml] [--count 1000] [--rate 2000] [--port P]
//                        [--interface IF] [--name NAME]
//
// Quotes look like "quote 17 ACME 101.37"; the end marker is "end <count>", sent three times
// because the channel is best effort and a subscriber uses it to compute its loss.
#include <chrono>
#include <cstring>
#include <thread>

#include <tmc/channel.hpp>

#include "common.hpp"

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // one line at a time, also into a pipe
  std::string manifest_path = TMC_PUBSUB_MANIFEST;
  std::string interface;
  std::string name = "publisher";
  long count = 1000;
  long rate = 2000;  // quotes per second
  int port = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    const char* v = argv[i + 1];
    if (a == "--manifest") manifest_path = v;
    else if (a == "--count") count = std::atol(v);
    else if (a == "--rate") rate = std::atol(v);
    else if (a == "--port") port = std::atoi(v);
    else if (a == "--interface") interface = v;
    else if (a == "--name") name = v;
    else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }
  if (count <= 0 || rate <= 0) {
    std::fprintf(stderr, "--count and --rate must be positive\n");
    return 2;
  }
  tmc::Manifest m;
  if (!pubsub::load(manifest_path, port, interface, m)) return 1;
  m.name = name;
  m.duplexity = tmc::Duplexity::send_only;  // a publisher never receives

  tmc::Channel c;
  if (tmc::Status st = tmc::Channel::try_open(m, {}, c); !st) {
    std::fprintf(stderr, "publisher: %s\n", st.to_string().c_str());
    return 1;
  }
  std::printf("publisher: channel '%s' on %s:%u, sending %ld quotes at %ld/s\n", m.id.c_str(),
              c.plan().transport.group.c_str(), static_cast<unsigned>(c.plan().transport.port), count, rate);
  static const char* const kSymbols[] = {"ACME", "GLOBEX", "INITECH", "UMBRELLA", "HOOLI"};
  const auto start = std::chrono::steady_clock::now();
  for (long i = 0; i < count; ++i) {
    char quote[64];
    std::snprintf(quote, sizeof quote, "quote %ld %s %ld.%02ld", i, kSymbols[i % 5], 100 + (i * 7) % 50, (i * 13) % 100);
    if (tmc::Status st = c.send(quote); !st) {
      std::fprintf(stderr, "publisher: send: %s\n", st.to_string().c_str());
      return 1;
    }
    // Pace to --rate: sleep until this quote's slot.
    std::this_thread::sleep_until(start + std::chrono::microseconds((i + 1) * 1000000 / rate));
  }
  const std::string end = "end " + std::to_string(count);
  for (int i = 0; i < 3; ++i) {
    (void)c.send(end);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  c.close();
  const tmc::ChannelStats s = c.stats();
  std::printf("publisher: sent %llu messages in %llu datagrams\n", static_cast<unsigned long long>(s.messages_sent),
              static_cast<unsigned long long>(s.datagrams_sent));
  return 0;
}
