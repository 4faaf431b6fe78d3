// ModuleSet: loaded modules and the Registry that layers them over the built-ins.
//
// The layered registry holds every built-in StageInfo, every module stage kind, and a
// congestion.window whose `algorithm` accepts the modules' controller names and whose
// stages build them: the stage asks the built-ins first, then the set's modules.
#include <algorithm>

#include "primitives/congestion/window.hpp"
#include "tmc/modules.hpp"

namespace tmc {

namespace {
constexpr std::string_view kWindowKind = "congestion.window";
}

ModuleSet::ModuleSet() { rebuild(); }
ModuleSet::~ModuleSet() = default;

Status ModuleSet::load(const std::string& path, std::string_view expected_sha256_hex) {
  std::shared_ptr<const LoadedModule> m;
  if (Status s = load_module_object(path, expected_sha256_hex, m); !s) return s;
  return add(std::move(m));
}

Status ModuleSet::add(std::shared_ptr<const LoadedModule> module) {
  if (!module) return {Code::INVALID_ARGUMENT, "ModuleSet::add: no module"};
  auto conflict = [&](const std::string& why) {
    return Status{Code::MODULE_ERROR, "module '" + module->name() + "' (" + module->path() + "): conflict: " + why};
  };
  if (const LoadedModule* other = find(module->name())) {
    return conflict("a module of that name is already loaded (" + other->path() + ")");
  }
  for (const StageInfo& info : module->stages()) {
    if (Registry::builtin().find(info.kind) != nullptr) {
      return conflict("stage kind '" + std::string(info.kind) + "' is built in");
    }
    if (registry_->find(info.kind) != nullptr) {
      return conflict("stage kind '" + std::string(info.kind) + "' is provided by another loaded module");
    }
  }
  // Wire extension types 128..255 are shared by every module of a channel: one owner each.
  for (const StageInfo& info : module->stages()) {
    for (const WireExtension& x : info.extensions) {
      for (const auto& other : modules_) {
        for (const StageInfo& o : other->stages()) {
          for (const WireExtension& y : o.extensions) {
            if (x.type == y.type) {
              return conflict("wire extension type " + std::to_string(x.type) + " of '" + std::string(info.kind) +
                              "' is owned by '" + std::string(o.kind) + "' of module '" + other->name() + "'");
            }
          }
        }
      }
    }
  }
  const CongestionLimits probe;
  for (std::string_view c : module->controllers()) {
    if (make_congestion_controller(c, probe) != nullptr) {
      return conflict("congestion controller '" + std::string(c) + "' is built in");
    }
    if (std::find(algorithms_.begin(), algorithms_.end(), c) != algorithms_.end()) {
      return conflict("congestion controller '" + std::string(c) + "' is provided by another loaded module");
    }
  }
  modules_.push_back(std::move(module));
  rebuild();
  return {};
}

const LoadedModule* ModuleSet::find(std::string_view name) const noexcept {
  for (const auto& m : modules_) {
    if (m->name() == name) return m.get();
  }
  return nullptr;
}

std::string ModuleSet::loaded_text() const {
  std::string out;
  for (const auto& m : modules_) out += (out.empty() ? "" : ", ") + m->name() + " " + m->version();
  return out.empty() ? "none" : out;
}

std::unique_ptr<CongestionController> ModuleSet::make_controller(std::string_view name,
                                                                 const CongestionLimits& limits) const {
  if (auto c = make_congestion_controller(name, limits)) return c;
  for (const auto& m : modules_) {
    if (auto c = m->make_controller(name, limits)) return c;
  }
  return nullptr;
}

Status ModuleSet::check_requested(const std::vector<std::string>& names) const {
  std::string missing;
  for (const std::string& n : names) {
    if (find(n) == nullptr) missing += (missing.empty() ? "'" : ", '") + n + "'";
  }
  if (missing.empty()) return {};
  return {Code::MODULE_ERROR, "the manifest's 'modules' asks for " + missing + ", not loaded (loaded: " +
                                  loaded_text() + "); load modules through OpenOptions::modules"};
}

void ModuleSet::rebuild() {
  auto reg = std::make_unique<Registry>();
  const StageInfo* window = Registry::builtin().find(kWindowKind);
  for (const StageInfo* info : Registry::builtin().all()) {
    if (info != window) (void)reg->add(*info);
  }
  // congestion.window, knowing the modules' controllers.
  algorithms_.clear();
  if (window != nullptr) {
    StageInfo w = *window;
    for (ParamSpec& p : w.params) {
      if (p.name != "algorithm") continue;
      algorithms_.assign(p.one_of.begin(), p.one_of.end());
      for (const auto& m : modules_) {
        for (std::string_view c : m->controllers()) algorithms_.push_back(c);
      }
      p.one_of = algorithms_;
    }
    std::vector<std::shared_ptr<const LoadedModule>> mods = modules_;
    w.factory = [mods]() -> std::unique_ptr<Stage> {
      return std::make_unique<detail::CongestionWindowStage>(
          [mods](std::string_view name, const CongestionLimits& limits) -> std::unique_ptr<CongestionController> {
            for (const auto& m : mods) {
              if (auto c = m->make_controller(name, limits)) return c;
            }
            return nullptr;
          });
    };
    (void)reg->add(std::move(w));
  }
  for (const auto& m : modules_) {
    for (const StageInfo& info : m->stages()) (void)reg->add(info);
  }
  registry_ = std::move(reg);
}

}  // namespace tmc
