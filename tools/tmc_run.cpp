// `tmc run`: start an unmodified program with its UDP sockets rewired onto libTMC channels
// (docs/retrofit.md). The manifest is checked here, so its problems are printed before the
// program starts; then the program is exec'ed with libtmc-retrofit.so preloaded.
#include "tmc_run.hpp"

#include <unistd.h>

#include <climits>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>

#include "retrofit/config.hpp"

namespace tmc_tool {

namespace {

// The shim: $TMC_RETROFIT_SHIM, else next to this executable (the build tree), else in the
// library directory of the installation this executable belongs to.
std::string find_shim() {
  if (const char* s = std::getenv("TMC_RETROFIT_SHIM"); s != nullptr && *s != '\0') return s;
  std::error_code ec;
  const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return {};
  const std::filesystem::path dir = exe.parent_path();
  for (const std::filesystem::path& p :
       {dir / "libtmc-retrofit.so", dir / ".." / TMC_INSTALL_LIBDIR / "libtmc-retrofit.so"}) {
    if (std::filesystem::exists(p, ec)) return std::filesystem::weakly_canonical(p, ec).string();
  }
  return {};
}

}  // namespace

int run_program(const RunOptions& o) {
  tmc::retrofit::Config cfg;
  std::string problems;
  if (!tmc::retrofit::load_config(o.manifest, cfg, problems)) {
    std::cerr << problems;
    return 1;
  }
  const std::string shim = find_shim();
  if (shim.empty()) {
    std::cerr << "tmc run: libtmc-retrofit.so not found next to tmc or in its lib directory; set TMC_RETROFIT_SHIM\n";
    return 1;
  }
  std::error_code ec;
  const std::string manifest = std::filesystem::absolute(o.manifest, ec).string();
  std::string preload = shim;
  if (const char* p = std::getenv("LD_PRELOAD"); p != nullptr && *p != '\0') preload += std::string(":") + p;
  setenv("LD_PRELOAD", preload.c_str(), 1);
  setenv("TMC_RETROFIT_MANIFEST", manifest.c_str(), 1);
  if (!o.name.empty()) setenv("TMC_RETROFIT_NAME", o.name.c_str(), 1);
  std::vector<char*> argv;
  for (const std::string& a : o.command) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  execvp(argv[0], argv.data());
  std::cerr << "tmc run: cannot start " << o.command[0] << ": " << std::strerror(errno) << "\n";
  return 127;
}

}  // namespace tmc_tool
