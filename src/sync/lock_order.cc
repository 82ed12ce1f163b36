// The lock-order validator: a graph of lock classes, per-thread held stacks, and a cache of
// validated held-lock chains (lockdep's chain keys). See lock_order.h.

#include "plexus/sync/lock_order.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include "plexus/core/log.h"
#include "plexus/core/thread_annotations.h"
#include "plexus/core/thread_id.h"
#include "plexus/sync/internal/lock_order_flag.h"
#include "plexus/sync/mutex.h"

namespace plexus {

namespace sync_internal {
std::atomic<bool> g_lock_order_on{false};
std::atomic<bool> g_lock_order_ever{false};
}  // namespace sync_internal

struct LockOrderAccess {
  static std::uint32_t& Id(const LockClass& cls) { return cls.id_; }
  static const LockClass* Named(const CompactLockClassRef& ref) {
    return ref.is_site_ ? nullptr : ref.named_;
  }
  static SourceLocation Site(const CompactLockClassRef& ref) {
    return ref.is_site_ ? ref.site_ : SourceLocation{};
  }
  static std::uint32_t& CachedId(const CompactLockClassRef& ref) { return ref.cached_id_; }
};

namespace {

using sync_internal::g_lock_order_ever;
using sync_internal::g_lock_order_on;

constexpr std::uint32_t kMaxClasses = 65535;

struct EdgeRecord {
  std::uint32_t to;
  SourceLocation from_where;
  SourceLocation to_where;
  std::uint32_t thread;
};

// Everything global lives behind one mutex: it is only taken for a class seen for the first
// time or a held-lock chain not validated before, so it is off the steady-state path.
class Registry {
 public:
  sync_internal::AnnotatedMutex mu;
  std::unordered_map<std::string, std::uint32_t> ids_by_key PLEXUS_GUARDED_BY(mu);
  std::vector<std::string> names PLEXUS_GUARDED_BY(mu){""};  // id 0 is "no class"
  std::vector<std::vector<EdgeRecord>> edges PLEXUS_GUARDED_BY(mu){{}};
  std::unordered_set<std::uint64_t> validated_chains PLEXUS_GUARDED_BY(mu);
  std::unordered_set<std::uint64_t> reported_pairs PLEXUS_GUARDED_BY(mu);
  LockOrderCallback callback PLEXUS_GUARDED_BY(mu);
  bool warned_full PLEXUS_GUARDED_BY(mu) = false;
  // The latest reports, oldest first, for RecentLockOrderViolations.
  std::deque<LockOrderViolation> recent PLEXUS_GUARDED_BY(mu);
};

constexpr std::size_t kRecentViolations = 64;

Registry& TheRegistry() {
  static auto* registry = new Registry();  // never destroyed: locks may be used at exit
  return *registry;
}

std::atomic<LockOrderAction> g_action{LockOrderAction::kLog};
std::atomic<std::uint64_t> g_violations{0};
// Bumped by ResetLockOrderState so per-thread caches notice they are stale.
std::atomic<std::uint64_t> g_generation{1};

struct Held {
  const void* lock;
  std::uint32_t cls;
  std::uint32_t count;
  SourceLocation where;
  std::uint64_t chain_key;  // hash of the classes of this entry and every entry below it
};

struct ThreadState {
  std::vector<Held> held;
  std::unordered_set<std::uint64_t> validated;
  std::uint64_t generation = 0;
};

ThreadState& Tls() {
  thread_local ThreadState state;
  const std::uint64_t generation = g_generation.load(std::memory_order_relaxed);
  if (state.generation != generation) {
    state.validated.clear();
    state.generation = generation;
  }
  return state;
}

std::uint64_t MixChain(std::uint64_t key, std::uint32_t cls) {
  // splitmix64 over (key, class): cheap and well distributed.
  std::uint64_t z = key ^ (static_cast<std::uint64_t>(cls) * 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

std::uint32_t Intern(Registry& r, const std::string& key, const std::string& name)
    PLEXUS_REQUIRES(r.mu) {
  auto it = r.ids_by_key.find(key);
  if (it != r.ids_by_key.end()) return it->second;
  if (r.names.size() > kMaxClasses) {
    if (!r.warned_full) {
      r.warned_full = true;
      Log(LogLevel::kWarning, "lock-order validation: class table full; new classes unchecked");
    }
    return 0;
  }
  const auto id = static_cast<std::uint32_t>(r.names.size());
  r.names.push_back(name);
  r.edges.emplace_back();
  r.ids_by_key.emplace(key, id);
  return id;
}

// The id of the class `named` (when set) or of the creation site `site`, cached in the
// LockClass or in `site_cache`.
std::uint32_t ResolveClass(const LockClass* named, SourceLocation site, std::uint32_t& site_cache) {
  std::uint32_t& slot = named ? LockOrderAccess::Id(*named) : site_cache;
  std::atomic_ref<std::uint32_t> cached(slot);
  if (const std::uint32_t id = cached.load(std::memory_order_acquire); id != 0) return id;
  Registry& r = TheRegistry();
  std::uint32_t id = 0;
  {
    MutexLock lock(r.mu);
    if (named) {
      id = Intern(r, std::string("name:") + named->Name(), named->Name());
    } else {
      // The column separates locks declared together (`Mutex a, b;`) into two classes.
      const std::string where = FormatLocation(site) + ":" + std::to_string(site.column());
      id = Intern(r, "site:" + where, "lock created at " + where);
    }
  }
  cached.store(id, std::memory_order_release);
  return id;
}

std::uint32_t ResolveClass(const LockClassRef& ref) {
  return ResolveClass(ref.named, ref.site, ref.cached_id);
}

std::uint32_t ResolveClass(const CompactLockClassRef& ref) {
  return ResolveClass(LockOrderAccess::Named(ref), LockOrderAccess::Site(ref),
                      LockOrderAccess::CachedId(ref));
}

// Depth-first search for a path from `from` to `to` in the class graph; fills `path` with the
// edges (from -> ... -> to) when found.
bool FindPath(Registry& r, std::uint32_t from, std::uint32_t to,
              std::vector<std::pair<std::uint32_t, const EdgeRecord*>>& path)
    PLEXUS_REQUIRES(r.mu) {
  std::vector<std::uint32_t> parent(r.names.size(), UINT32_MAX);
  std::vector<const EdgeRecord*> via(r.names.size(), nullptr);
  std::vector<std::uint32_t> stack{from};
  parent[from] = from;
  while (!stack.empty()) {
    const std::uint32_t node = stack.back();
    stack.pop_back();
    if (node == to) {
      for (std::uint32_t n = to; n != from; n = parent[n]) path.emplace_back(parent[n], via[n]);
      std::reverse(path.begin(), path.end());
      return true;
    }
    for (const EdgeRecord& e : r.edges[node]) {
      if (parent[e.to] != UINT32_MAX) continue;
      parent[e.to] = node;
      via[e.to] = &e;
      stack.push_back(e.to);
    }
  }
  return false;
}

std::string Describe(const LockOrderEdge& e) {
  return e.from + " (taken at " + FormatLocation(e.from_where) + ") then " + e.to + " (taken at " +
         FormatLocation(e.to_where) + ") by thread " + std::to_string(e.thread);
}

// Validates taking class `cls` at `where` while `state.held` is held. Returns normally when
// the acquisition may go ahead; throws LockOrderError (kRefuse) or aborts (kAbort).
void Validate(ThreadState& state, std::uint32_t cls, std::uint64_t key, SourceLocation where) {
  Registry& r = TheRegistry();
  LockOrderViolation violation;
  bool report = false;
  bool inverted = false;
  LockOrderCallback callback;
  {
    MutexLock lock(r.mu);
    if (r.validated_chains.count(key) != 0) {
      state.validated.insert(key);
      return;
    }
    const std::uint32_t thread = CurrentThreadNumber();
    for (const Held& h : state.held) {
      if (h.cls == cls || h.cls == 0) continue;
      auto& out = r.edges[h.cls];
      if (std::any_of(out.begin(), out.end(), [cls](const EdgeRecord& e) { return e.to == cls; })) {
        continue;
      }
      std::vector<std::pair<std::uint32_t, const EdgeRecord*>> path;
      if (FindPath(r, cls, h.cls, path)) {
        inverted = true;
        const std::uint64_t pair = std::min(h.cls, cls) * 0x100000000ull + std::max(h.cls, cls);
        if (!r.reported_pairs.insert(pair).second) continue;
        report = true;
        violation.attempted = LockOrderEdge{r.names[h.cls], r.names[cls], h.where, where, thread};
        for (const auto& [from, edge] : path) {
          violation.established.push_back(LockOrderEdge{
              r.names[from], r.names[edge->to], edge->from_where, edge->to_where, edge->thread});
        }
        continue;  // the inverting edge is not added: the graph stays acyclic
      }
      out.push_back(EdgeRecord{cls, h.where, where, thread});
    }
    if (!inverted) {
      r.validated_chains.insert(key);
      state.validated.insert(key);
    }
    if (report) callback = r.callback;
  }
  if (!inverted) return;
  const LockOrderAction action = g_action.load();
  if (report) {
    g_violations.fetch_add(1);
    std::string& m = violation.message;
    m = "lock-order inversion: " + Describe(violation.attempted) +
        "; the opposite order was seen before: ";
    for (std::size_t i = 0; i < violation.established.size(); ++i) {
      if (i != 0) m += "; ";
      m += Describe(violation.established[i]);
    }
    if (action == LockOrderAction::kRefuse) m += " (acquisition refused)";
    Log(LogLevel::kError, m, where);
    {
      MutexLock lock(r.mu);
      r.recent.push_back(violation);
      if (r.recent.size() > kRecentViolations) r.recent.pop_front();
    }
    if (callback) callback(violation);
  }
  switch (action) {
    case LockOrderAction::kLog:
      return;
    case LockOrderAction::kAbort:
      std::abort();
    case LockOrderAction::kRefuse:
      throw LockOrderError(report ? violation.message
                                  : std::string("lock-order inversion (reported before); "
                                                "acquisition refused"),
                           where);
  }
}

void Push(ThreadState& state, const void* lock, std::uint32_t cls, SourceLocation where) {
  const std::uint64_t below = state.held.empty() ? 0 : state.held.back().chain_key;
  state.held.push_back(Held{lock, cls, 1, where, MixChain(below, cls)});
}

// Returns the held entry for `lock`, newest first, or nullptr.
Held* FindHeld(ThreadState& state, const void* lock) {
  for (auto it = state.held.rbegin(); it != state.held.rend(); ++it) {
    if (it->lock == lock) return &*it;
  }
  return nullptr;
}

void Pop(const void* lock) {
  ThreadState& state = Tls();
  Held* h = FindHeld(state, lock);
  if (h == nullptr) return;  // taken before validation was switched on
  if (--h->count != 0) return;
  const auto index = static_cast<std::size_t>(h - state.held.data());
  state.held.erase(state.held.begin() + static_cast<std::ptrdiff_t>(index));
  // Out-of-order release: the chain keys above the removed entry no longer include it.
  for (std::size_t i = index; i < state.held.size(); ++i) {
    const std::uint64_t below = i == 0 ? 0 : state.held[i - 1].chain_key;
    state.held[i].chain_key = MixChain(below, state.held[i].cls);
  }
}

const bool g_env_checked = [] {
  const char* value = std::getenv("PLEXUS_LOCK_ORDER");
  if (value != nullptr && *value != '\0' && std::string_view(value) != "0") {
    EnableLockOrderValidation(true);
  }
  return true;
}();

}  // namespace

bool EnableLockOrderValidation(bool on) {
  if (on) g_lock_order_ever.store(true);
  return g_lock_order_on.exchange(on);
}

bool LockOrderValidationEnabled() noexcept {
  return g_lock_order_on.load();
}

LockOrderAction SetLockOrderAction(LockOrderAction action) {
  return g_action.exchange(action);
}

void SetLockOrderCallback(LockOrderCallback callback) {
  Registry& r = TheRegistry();
  MutexLock lock(r.mu);
  r.callback = std::move(callback);
}

std::uint64_t LockOrderViolationCount() {
  return g_violations.load();
}

std::vector<LockOrderViolation> RecentLockOrderViolations() {
  Registry& r = TheRegistry();
  MutexLock lock(r.mu);
  return {r.recent.begin(), r.recent.end()};
}

void ResetLockOrderState() {
  Registry& r = TheRegistry();
  {
    MutexLock lock(r.mu);
    for (auto& out : r.edges) out.clear();
    r.validated_chains.clear();
    r.reported_pairs.clear();
    r.recent.clear();
  }
  g_violations.store(0);
  g_generation.fetch_add(1);
}

namespace {

template <class Ref>
void GuardAcquire(const void* lock, const Ref& cls, SourceLocation where) {
  if (!g_lock_order_on.load(std::memory_order_relaxed)) return;
  ThreadState& state = Tls();
  if (Held* h = FindHeld(state, lock); h != nullptr) {
    ++h->count;  // recursion orders nothing new
    return;
  }
  const std::uint32_t id = ResolveClass(cls);
  const std::uint64_t key = MixChain(state.held.empty() ? 0 : state.held.back().chain_key, id);
  if (id != 0 && !state.held.empty() && state.validated.count(key) == 0) {
    Validate(state, id, key, where);
  }
  Push(state, lock, id, where);
}

template <class Ref>
void NoteTryAcquired(const void* lock, const Ref& cls, SourceLocation where) {
  if (!g_lock_order_on.load(std::memory_order_relaxed)) return;
  ThreadState& state = Tls();
  if (Held* h = FindHeld(state, lock); h != nullptr) {
    ++h->count;
    return;
  }
  Push(state, lock, ResolveClass(cls), where);
}

}  // namespace

void LockOrderGuardAcquire(const void* lock, const LockClassRef& cls, SourceLocation where) {
  GuardAcquire(lock, cls, where);
}

void LockOrderGuardAcquire(const void* lock, const CompactLockClassRef& cls, SourceLocation where) {
  GuardAcquire(lock, cls, where);
}

void LockOrderNoteTryAcquired(const void* lock, const LockClassRef& cls, SourceLocation where) {
  NoteTryAcquired(lock, cls, where);
}

void LockOrderNoteTryAcquired(const void* lock, const CompactLockClassRef& cls,
                              SourceLocation where) {
  NoteTryAcquired(lock, cls, where);
}

void LockOrderNoteRelease(const void* lock) {
  if (!g_lock_order_ever.load(std::memory_order_relaxed)) return;
  Pop(lock);
}

void LockOrderCancelAcquire(const void* lock) {
  LockOrderNoteRelease(lock);
}

bool LockOrderHeldByCurrentThread(const void* lock) {
  return FindHeld(Tls(), lock) != nullptr;
}

}  // namespace plexus
