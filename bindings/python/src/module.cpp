// The extension module libTMC._tmc. It only wires the parts together; the public API is
// the package libTMC (bindings/python/libTMC/__init__.py), which re-exports from here.
#include "common.hpp"

PYBIND11_MODULE(_tmc, m) {
  m.doc() = "libTMC's compiled core (private: import libTMC instead).";
  tmc::python::register_errors(m);  // first: every other part raises these
  tmc::python::register_manifest(m);
  tmc::python::register_message(m);
  tmc::python::register_plan(m);
  tmc::python::register_channel(m);
}
