#include "plexus/core/ref_debug.h"

#include <cxxabi.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string_view>
#include <unordered_map>

#include "plexus/core/internal/ref_debug_flag.h"
#include "plexus/core/log.h"
#include "plexus/core/thread_id.h"

namespace plexus {
namespace core_internal {
std::atomic<bool> g_ref_debug_on{false};
std::atomic<bool> g_ref_debug_ever{false};
}  // namespace core_internal

namespace {

using core_internal::g_ref_debug_ever;
using core_internal::g_ref_debug_on;

struct Entry {
  const char* type_name = nullptr;  // mangled; demangled when reported
  std::vector<RefHolder> holders;
};

struct Shard {
  std::mutex mu;
  std::unordered_map<const void*, Entry> objects;
};

constexpr std::size_t kShardCount = 64;

// Never destroyed: references may be dropped by static destructors after main returns.
std::array<Shard, kShardCount>& Shards() {
  static auto* shards = new std::array<Shard, kShardCount>();
  return *shards;
}

Shard& ShardFor(const void* object) {
  const auto bits = reinterpret_cast<std::uintptr_t>(object);
  return Shards()[(bits >> 4 ^ bits >> 12) % kShardCount];
}

std::string Demangle(const char* mangled) {
  if (mangled == nullptr) return "<unknown type>";
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> out(
      abi::__cxa_demangle(mangled, nullptr, nullptr, &status), &std::free);
  return status == 0 && out ? std::string(out.get()) : std::string(mangled);
}

bool SameFile(const SourceLocation& a, const SourceLocation& b) {
  return a.file_name() != nullptr && b.file_name() != nullptr &&
         std::strcmp(a.file_name(), b.file_name()) == 0;
}

void ExitReport() {
  if (!g_ref_debug_on.load()) return;
  const std::size_t leaked = ReportRefLeaks();
  if (leaked == 0) return;
  if (const char* code = std::getenv("PLEXUS_REF_DEBUG_EXIT_CODE"); code != nullptr) {
    std::_Exit(std::atoi(code));
  }
}

std::once_flag g_exit_hook_once;

void TurnOn() {
  Shards();  // constructed before the exit hook is registered, so it outlives the hook
  g_ref_debug_ever.store(true);
  g_ref_debug_on.store(true);
  std::call_once(g_exit_hook_once, [] { std::atexit(&ExitReport); });
}

// PLEXUS_REF_DEBUG=1 (or any value but 0/empty) switches debugging on before main.
const bool g_env_checked = [] {
  const char* value = std::getenv("PLEXUS_REF_DEBUG");
  if (value != nullptr && *value != '\0' && std::string_view(value) != "0") TurnOn();
  return true;
}();

}  // namespace

bool EnableRefDebugging(bool on) {
  const bool previous = g_ref_debug_on.load();
  if (on) {
    TurnOn();
  } else {
    g_ref_debug_on.store(false);
  }
  return previous;
}

bool RefDebuggingEnabled() noexcept {
  return g_ref_debug_on.load(std::memory_order_relaxed);
}

std::vector<RefHolder> RefHoldersOf(const void* object) {
  if (!g_ref_debug_ever.load()) return {};
  Shard& shard = ShardFor(object);
  std::lock_guard lock(shard.mu);
  auto it = shard.objects.find(object);
  return it == shard.objects.end() ? std::vector<RefHolder>{} : it->second.holders;
}

std::vector<TrackedObject> LiveTrackedObjects() {
  std::vector<TrackedObject> out;
  if (!g_ref_debug_ever.load()) return out;
  for (Shard& shard : Shards()) {
    std::lock_guard lock(shard.mu);
    for (const auto& [object, entry] : shard.objects) {
      if (entry.holders.empty()) continue;
      out.push_back(TrackedObject{object, Demangle(entry.type_name), entry.holders});
    }
  }
  std::sort(out.begin(), out.end(),
            [](const TrackedObject& a, const TrackedObject& b) { return a.object < b.object; });
  return out;
}

std::string RefDebugReport() {
  if (!g_ref_debug_on.load()) {
    return "reference debugging is off (set PLEXUS_REF_DEBUG=1 or call "
           "plexus::EnableRefDebugging(true))\n";
  }
  const std::vector<TrackedObject> objects = LiveTrackedObjects();
  std::string out = std::to_string(objects.size()) + " tracked object(s) alive\n";
  for (const TrackedObject& object : objects) {
    char address[32];
    std::snprintf(address, sizeof address, "%p", object.object);
    out += "  " + object.type_name + " at " + address + ": " +
           std::to_string(object.holders.size()) + " holder(s)\n";
    for (const RefHolder& holder : object.holders) {
      out += "    held from " + FormatLocationLong(holder.where) + " by thread " +
             std::to_string(holder.thread) + "\n";
    }
  }
  return out;
}

std::size_t ReportRefLeaks() {
  const std::vector<TrackedObject> objects = LiveTrackedObjects();
  if (!objects.empty()) {
    Log(LogLevel::kError, "reference leak report: " + RefDebugReport());
  }
  return objects.size();
}

namespace core_internal {

void RefTrackAdd(const void* object, const char* type_name, const void* key, SourceLocation where) {
  Shard& shard = ShardFor(object);
  const std::uint32_t thread = CurrentThreadNumber();
  std::lock_guard lock(shard.mu);
  Entry& entry = shard.objects[object];
  if (entry.type_name == nullptr) entry.type_name = type_name;
  entry.holders.push_back(RefHolder{where, thread, key});
}

void RefTrackDrop(const void* object, const void* key, SourceLocation where) {
  Shard& shard = ShardFor(object);
  std::lock_guard lock(shard.mu);
  auto it = shard.objects.find(object);
  if (it == shard.objects.end()) return;  // taken before debugging was on
  auto& holders = it->second.holders;
  auto match = holders.rend();
  if (key != nullptr) {
    match = std::find_if(holders.rbegin(), holders.rend(),
                         [key](const RefHolder& h) { return h.key == key; });
  } else {
    match = std::find_if(holders.rbegin(), holders.rend(), [&where](const RefHolder& h) {
      return h.key == nullptr && SameFile(h.where, where);
    });
    if (match == holders.rend()) {
      match = std::find_if(holders.rbegin(), holders.rend(),
                           [](const RefHolder& h) { return h.key == nullptr; });
    }
  }
  if (match != holders.rend()) holders.erase(std::next(match).base());
  if (holders.empty()) shard.objects.erase(it);
}

void RefTrackMove(const void* object, const void* from_key, const void* to_key) {
  Shard& shard = ShardFor(object);
  std::lock_guard lock(shard.mu);
  auto it = shard.objects.find(object);
  if (it == shard.objects.end()) return;
  for (auto h = it->second.holders.rbegin(); h != it->second.holders.rend(); ++h) {
    if (h->key == from_key) {
      h->key = to_key;
      return;
    }
  }
}

void RefTrackCopy(const void* object, const void* from_key, const void* to_key) {
  Shard& shard = ShardFor(object);
  std::lock_guard lock(shard.mu);
  auto it = shard.objects.find(object);
  if (it == shard.objects.end()) return;
  auto& holders = it->second.holders;
  auto from = std::find_if(holders.rbegin(), holders.rend(),
                           [from_key](const RefHolder& h) { return h.key == from_key; });
  auto to = std::find_if(holders.rbegin(), holders.rend(),
                         [to_key](const RefHolder& h) { return h.key == to_key; });
  if (from != holders.rend() && to != holders.rend()) to->where = from->where;
}

void RefTrackDestroyed(const void* object) {
  Shard& shard = ShardFor(object);
  std::lock_guard lock(shard.mu);
  shard.objects.erase(object);
}

}  // namespace core_internal
}  // namespace plexus
