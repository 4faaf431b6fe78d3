// Loading one module object: read, digest, dlopen, entry point, table checks, conversion.
//
// The bytes are read once. Their SHA-256 is checked against the digest the caller has
// from a verified index, and the very same bytes are then loaded from an anonymous memory
// file (memfd), so a file swapped on disk between the check and the load is never run.
// The table is then checked field by field before any of it is used: abi_version within
// [kModuleAbiMin, kModuleAbiMax], struct sizes large enough for what that version
// requires, every required string and function present, counts within bounds, parameter
// defaults accepted by their own specs (Registry::add checks that), extension types in
// 128..255, layers known.
#include <dlfcn.h>
#include <sys/mman.h>
#include <unistd.h>

#include <sodium.h>

#include <cstddef>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>

#include "runtime/modules/host.hpp"
#include "tmc/module.hpp"

namespace tmc {

namespace {

// Smallest struct sizes ABI version 1 requires: up to and including its last required
// field. The fields after it (cxx_layout; held_packets, max_held_packets, send_backlog)
// were there from the first header but are optional, so a module built against a header
// revision without them still loads; each table is copied into this runtime's layout,
// zero past the module's struct_size.
constexpr std::size_t kMinModuleSize = offsetof(tmc_module, controllers) + sizeof(void*);
constexpr std::size_t kMinStageSize = offsetof(tmc_stage_kind, on_stop) + sizeof(void*);
constexpr std::size_t kMinControllerSize = offsetof(tmc_controller_kind, window_bytes) + sizeof(void*);
constexpr std::uint32_t kMaxKinds = 256;
constexpr std::uint32_t kMaxItems = 1024;

std::string hex(const unsigned char* d, std::size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(2 * n, '0');
  for (std::size_t i = 0; i < n; ++i) {
    out[2 * i] = kDigits[d[i] >> 4];
    out[2 * i + 1] = kDigits[d[i] & 0xF];
  }
  return out;
}

bool is_hex_digest(std::string_view s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) return false;
  }
  return true;
}

bool same_digest(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    auto lower = [](char c) { return c >= 'A' && c <= 'F' ? static_cast<char>(c - 'A' + 'a') : c; };
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

std::string str(const char* s) { return s == nullptr ? std::string() : std::string(s); }

}  // namespace

std::string sha256_hex(std::string_view bytes) {
  unsigned char d[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(d, reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
  return hex(d, sizeof d);
}

LoadedModule::~LoadedModule() {
  // Stages and controllers hold a reference, so none of the module's code runs past here.
  if (handle_ != nullptr) dlclose(handle_);
  if (memfd_ >= 0) close(memfd_);
}

std::vector<std::string_view> LoadedModule::controllers() const {
  std::vector<std::string_view> out;
  for (const tmc_controller_kind* c : controllers_) out.emplace_back(c->name);
  return out;
}

std::unique_ptr<CongestionController> LoadedModule::make_controller(std::string_view name,
                                                                    const CongestionLimits& limits,
                                                                    std::string* error) const {
  for (const tmc_controller_kind* c : controllers_) {
    if (name != c->name) continue;
    std::shared_ptr<const LoadedModule> self = self_.lock();
    if (!self) return nullptr;
    return detail::make_module_controller(std::move(self), c, limits, error);
  }
  return nullptr;
}

/// Builds a LoadedModule step by step; each failure names the module, the file and the step.
struct ModuleLoader {
  std::string path;
  std::string module = {};  // the module's name once known
  std::shared_ptr<LoadedModule> m = std::shared_ptr<LoadedModule>(new LoadedModule);

  Status fail(std::string_view step, const std::string& why) const {
    std::string who = module.empty() ? "module object" : "module '" + module + "'";
    return {Code::MODULE_ERROR, who + " (" + path + "): " + std::string(step) + ": " + why};
  }

  const char* keep(std::string s) {
    m->strings_.push_back(std::move(s));
    return m->strings_.back().c_str();
  }

  Status read_and_open(std::string_view expected) {
    if (!expected.empty() && !is_hex_digest(expected)) {
      return fail("digest", "expected digest '" + std::string(expected) + "' is not 64 hex digits");
    }
    std::ifstream in(path, std::ios::binary);
    if (!in) return fail("read", "cannot open the file");
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (in.bad()) return fail("read", "read error");
    if (sodium_init() < 0) return fail("digest", "libsodium failed to initialise");
    m->sha256_ = sha256_hex(bytes);
    if (!expected.empty() && !same_digest(expected, m->sha256_)) {
      return fail("digest", "SHA-256 is " + m->sha256_ + ", the index says " + std::string(expected));
    }
    // Load exactly the bytes that were checked.
    m->memfd_ = memfd_create("tmc-module", MFD_CLOEXEC);
    if (m->memfd_ < 0) return fail("dlopen", "memfd_create failed");
    std::size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n = write(m->memfd_, bytes.data() + done, bytes.size() - done);
      if (n <= 0) return fail("dlopen", "cannot stage the object in memory");
      done += static_cast<std::size_t>(n);
    }
    const std::string fd_path = "/proc/self/fd/" + std::to_string(m->memfd_);
    dlerror();
    m->handle_ = dlopen(fd_path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (m->handle_ == nullptr) {
      const char* e = dlerror();
      return fail("dlopen", e != nullptr ? e : "unknown error");
    }
    return {};
  }

  Status entry() {
    dlerror();
    void* sym = dlsym(m->handle_, TMC_MODULE_ENTRY_SYMBOL);
    if (sym == nullptr) return fail("entry point", "no symbol '" TMC_MODULE_ENTRY_SYMBOL "' (not built as a libTMC module?)");
    tmc_module_entry_fn fn = nullptr;
    static_assert(sizeof fn == sizeof sym);
    std::memcpy(&fn, &sym, sizeof fn);
    const tmc_module* t = fn(&detail::module_host());
    if (t == nullptr) return fail("init", "the entry point returned no table");
    raw_ = t;
    return {};
  }

  template <class T>
  static void copy_table(T& dst, const T* src, std::uint32_t struct_size) {
    std::memcpy(&dst, src, struct_size < sizeof(T) ? struct_size : sizeof(T));
  }

  Status check_module() {
    const tmc_module& t = *raw_;
    // The name first, so that even a refused version names the module.
    if (t.struct_size >= offsetof(tmc_module, version) && t.name != nullptr) module = t.name;
    if (t.abi_version > kModuleAbiMax) {
      return fail("abi version", "built for module ABI " + std::to_string(t.abi_version) +
                                     "; this runtime speaks " + std::to_string(kModuleAbiMin) + ".." +
                                     std::to_string(kModuleAbiMax) + " (upgrade libTMC or rebuild the module)");
    }
    if (t.abi_version < kModuleAbiMin) {
      return fail("abi version", "built for module ABI " + std::to_string(t.abi_version) +
                                     ", which this runtime no longer speaks (oldest: " +
                                     std::to_string(kModuleAbiMin) + ")");
    }
    if (t.struct_size < kMinModuleSize) {
      return fail("table", "tmc_module.struct_size " + std::to_string(t.struct_size) + " is below the " +
                               std::to_string(kMinModuleSize) + " bytes ABI 1 requires");
    }
    if (t.name == nullptr || *t.name == '\0') return fail("table", "the module has no name");
    module = t.name;
    if (t.version == nullptr || *t.version == '\0') return fail("table", "the module has no version");
    if (t.n_stages > kMaxKinds || t.n_controllers > kMaxKinds) return fail("table", "too many stage kinds or controllers");
    if (t.n_stages > 0 && t.stages == nullptr) return fail("table", "n_stages is set but stages is NULL");
    if (t.n_controllers > 0 && t.controllers == nullptr) return fail("table", "n_controllers is set but controllers is NULL");
    copy_table(m->table_, raw_, t.struct_size);
    if (m->table_.cxx_layout != 0 && m->table_.cxx_layout != module::cxx_layout()) {
      return fail("abi version", "built with the C++ adapter against other libTMC headers or another C++ standard "
                                 "library (layout fingerprint differs); rebuild it against this libTMC");
    }
    m->name_ = t.name;
    m->version_ = t.version;
    m->abi_version_ = t.abi_version;
    m->provenance_ = "module " + m->name_ + " " + m->version_ + ", sha256 " + m->sha256_;
    return {};
  }

  Status check_params(const tmc_stage_kind& k, StageInfo& info, const std::string& step) {
    if (k.n_params > kMaxItems || (k.n_params > 0 && k.params == nullptr)) return fail(step, "bad parameter table");
    for (std::uint32_t i = 0; i < k.n_params; ++i) {
      const tmc_param_spec& p = k.params[i];
      if (p.name == nullptr || *p.name == '\0') return fail(step, "parameter " + std::to_string(i) + " has no name");
      if (p.type > TMC_PARAM_STRING_LIST) return fail(step, "parameter '" + str(p.name) + "' has unknown type");
      if (p.default_value == nullptr) return fail(step, "parameter '" + str(p.name) + "' has no default");
      if (p.n_one_of > kMaxItems || (p.n_one_of > 0 && p.one_of == nullptr)) {
        return fail(step, "parameter '" + str(p.name) + "' has a bad word list");
      }
      ParamSpec s{.name = p.name, .type = static_cast<ParamType>(p.type), .default_value = p.default_value,
                  .doc = p.doc == nullptr ? "" : p.doc};
      if ((p.flags & TMC_PARAM_HAS_MIN) != 0) s.min = p.min;
      if ((p.flags & TMC_PARAM_HAS_MAX) != 0) s.max = p.max;
      if ((p.flags & TMC_PARAM_HAS_LO) != 0) s.lo = p.lo;
      if ((p.flags & TMC_PARAM_HAS_HI) != 0) s.hi = p.hi;
      s.lo_open = (p.flags & TMC_PARAM_LO_OPEN) != 0;
      if (p.n_one_of > 0) {
        std::vector<std::string_view>& words = m->words_.emplace_back();
        for (std::uint32_t w = 0; w < p.n_one_of; ++w) {
          if (p.one_of[w] == nullptr) return fail(step, "parameter '" + str(p.name) + "' has a NULL word");
          words.emplace_back(p.one_of[w]);
        }
        s.one_of = words;
      }
      info.params.push_back(s);
    }
    return {};
  }

  Status check_stage(const tmc_stage_kind* kp, std::size_t index) {
    if (kp == nullptr) return fail("table", "stage " + std::to_string(index) + " is NULL");
    const std::string step = "stage " + (kp->struct_size >= offsetof(tmc_stage_kind, synopsis) && kp->kind != nullptr
                                             ? str(kp->kind)
                                             : "#" + std::to_string(index));
    if (kp->struct_size < kMinStageSize) {
      return fail(step, "tmc_stage_kind.struct_size " + std::to_string(kp->struct_size) + " is below the " +
                            std::to_string(kMinStageSize) + " bytes ABI 1 requires");
    }
    tmc_stage_kind& k = m->stage_tables_.emplace_back();
    copy_table(k, kp, kp->struct_size);
    const std::string kind = str(k.kind);
    const std::size_t dot = kind.find('.');
    if (dot == std::string::npos || dot == 0 || dot + 1 == kind.size()) {
      return fail(step, "kind '" + kind + "' is not '<category>.<name>'");
    }
    if (k.synopsis == nullptr) return fail(step, "no synopsis");
    if (k.create == nullptr || k.destroy == nullptr) return fail(step, "create and destroy are required");
    if (k.layer > TMC_LAYER_BOTTOM) return fail(step, "unknown layer " + std::to_string(k.layer));
    StageInfo info;
    info.kind = k.kind;
    info.synopsis = k.synopsis;
    info.notes = k.notes == nullptr ? "" : k.notes;
    if (Status s = check_params(k, info, step); !s) return s;
    if (k.n_counters > kMaxItems || (k.n_counters > 0 && k.counters == nullptr)) return fail(step, "bad counter table");
    for (std::uint32_t i = 0; i < k.n_counters; ++i) {
      if (k.counters[i].name == nullptr) return fail(step, "counter " + std::to_string(i) + " has no name");
      info.counters.push_back({k.counters[i].name, k.counters[i].doc == nullptr ? "" : k.counters[i].doc});
    }
    const std::size_t fault_counter = info.counters.size();
    info.counters.push_back({keep(kind + ".module_faults"),
                             "calls of the module's stage that reported a fault (it is then bypassed: what reaches "
                             "it is dropped as drops.unsupported)"});
    if (k.n_extensions > 128 || (k.n_extensions > 0 && k.extensions == nullptr)) return fail(step, "bad extension table");
    for (std::uint32_t i = 0; i < k.n_extensions; ++i) {
      const tmc_wire_extension& x = k.extensions[i];
      if (x.type < 128 || x.type > 255) {
        return fail(step, "extension type " + std::to_string(x.type) + " is outside 128..255 (1..127 are built in)");
      }
      info.extensions.push_back({.type = static_cast<std::uint8_t>(x.type), .name = x.name == nullptr ? "" : x.name,
                                 .body_bytes = x.body_bytes, .carried_on = x.carried_on == nullptr ? "" : x.carried_on,
                                 .body = x.body == nullptr ? "" : x.body});
    }
    info.wire_bytes_per_datagram = k.wire_bytes_per_datagram;
    info.wire_bytes_per_message = k.wire_bytes_per_message;
    info.per_message = k.per_message != 0;
    info.serves = k.serves == nullptr ? "" : k.serves;
    for (std::uint32_t i = 0; i < k.n_requires_below && k.requires_below != nullptr && i < kMaxItems; ++i) {
      if (k.requires_below[i] != nullptr) info.requires_below.emplace_back(k.requires_below[i]);
    }
    for (std::uint32_t i = 0; i < k.n_requires_above && k.requires_above != nullptr && i < kMaxItems; ++i) {
      if (k.requires_above[i] != nullptr) info.requires_above.emplace_back(k.requires_above[i]);
    }
    info.layer = static_cast<StageLayer>(k.layer + 1);
    info.provenance = m->provenance_;
    m->stages_.push_back(std::move(info));
    // The factory is bound once every StageInfo has its final address (see finish()).
    kinds_.push_back({&k, fault_counter});
    return {};
  }

  Status check_controller(const tmc_controller_kind* c, std::size_t index) {
    if (c == nullptr) return fail("table", "controller " + std::to_string(index) + " is NULL");
    const std::string step = "controller " + (c->name != nullptr ? str(c->name) : "#" + std::to_string(index));
    if (c->struct_size < kMinControllerSize) {
      return fail(step, "tmc_controller_kind.struct_size " + std::to_string(c->struct_size) + " is below the " +
                            std::to_string(kMinControllerSize) + " bytes ABI 1 requires");
    }
    if (c->name == nullptr || *c->name == '\0') return fail(step, "no name");
    if (c->create == nullptr || c->destroy == nullptr || c->window_bytes == nullptr) {
      return fail(step, "create, destroy and window_bytes are required");
    }
    tmc_controller_kind& copy = m->controller_tables_.emplace_back();
    copy_table(copy, c, c->struct_size);
    m->controllers_.push_back(&copy);
    return {};
  }

  void finish() {
    m->path_ = path;
    m->self_ = m;
    // Factories hold the module through a weak reference that the ModuleSet (or whoever
    // keeps the LoadedModule) makes strong for each stage: a stage keeps its module loaded.
    std::weak_ptr<const LoadedModule> weak = m;
    for (std::size_t i = 0; i < m->stages_.size(); ++i) {
      const tmc_stage_kind* k = kinds_[i].first;
      const std::size_t fault = kinds_[i].second;
      const StageInfo* info = &m->stages_[i];
      m->stages_[i].factory = [weak, k, info, fault]() -> std::unique_ptr<Stage> {
        std::shared_ptr<const LoadedModule> mod = weak.lock();
        if (!mod) return nullptr;
        return detail::make_module_stage(std::move(mod), k, info, fault);
      };
    }
  }

  Status run(std::string_view expected, std::shared_ptr<const LoadedModule>& out) {
    if (Status s = read_and_open(expected); !s) return s;
    if (Status s = entry(); !s) return s;
    if (Status s = check_module(); !s) return s;
    const tmc_module& t = m->table_;
    m->stages_.reserve(t.n_stages);  // StageInfo addresses must not move (factories point at them)
    for (std::uint32_t i = 0; i < t.n_stages; ++i) {
      if (Status s = check_stage(t.stages[i], i); !s) return s;
    }
    for (std::uint32_t i = 0; i < t.n_controllers; ++i) {
      if (Status s = check_controller(t.controllers[i], i); !s) return s;
    }
    // Every parameter default must be accepted by its own spec, and no kind declared twice.
    Registry probe;
    for (const StageInfo& info : m->stages_) {
      StageInfo copy = info;
      copy.factory = [] { return std::unique_ptr<Stage>(); };
      if (Status s = probe.add(std::move(copy)); !s) return fail("stage " + std::string(info.kind), s.message());
    }
    finish();
    out = std::move(m);
    return {};
  }

  std::vector<std::pair<const tmc_stage_kind*, std::size_t>> kinds_ = {};
  const tmc_module* raw_ = nullptr;
};

Status load_module_object(const std::string& path, std::string_view expected_sha256_hex,
                          std::shared_ptr<const LoadedModule>& out) {
  ModuleLoader l;
  l.path = path;
  return l.run(expected_sha256_hex, out);
}

}  // namespace tmc
