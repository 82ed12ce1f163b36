#include "plexus/ops/counter.h"

#include <map>
#include <utility>

#include "plexus/core/misuse.h"
#include "plexus/sync/mutex.h"

namespace plexus::ops {
namespace {

// The live, listed counters by name. A map keeps the listing sorted and a name unique; the
// lock guards the map only (Add never takes it).
struct Registry {
  sync_internal::AnnotatedMutex mu;
  std::map<std::string, const Counter*, std::less<>> by_name PLEXUS_GUARDED_BY(mu);
};

Registry& TheRegistry() {
  static Registry* registry = new Registry;  // never destroyed: counters may outlive statics
  return *registry;
}

}  // namespace

Counter::Counter(std::string name, std::string help, SourceLocation where)
    : name_(std::move(name)), help_(std::move(help)) {
  Registry& r = TheRegistry();
  {
    MutexLock lock(r.mu);
    listed_ = r.by_name.try_emplace(name_, this).second;
  }
  if (!listed_) {
    ReportMisuse("plexus::ops::Counter: a live counter is already named '" + name_ +
                     "'; this one counts but is not listed",
                 where);
  }
}

Counter::~Counter() {
  if (!listed_) return;
  Registry& r = TheRegistry();
  MutexLock lock(r.mu);
  r.by_name.erase(name_);
}

std::vector<CounterStats> ListCounters() {
  Registry& r = TheRegistry();
  MutexLock lock(r.mu);
  std::vector<CounterStats> out;
  out.reserve(r.by_name.size());
  for (const auto& [name, counter] : r.by_name) {
    out.push_back({name, counter->Help(), counter->Value()});
  }
  return out;
}

}  // namespace plexus::ops
