// -----------------------------------------------------------------------------
// plexus/core/ref_debug.h
// -----------------------------------------------------------------------------
//
// Reference debugging, switchable at run time. Neither Asterisk (REF_DEBUG) nor PJLIB
// (PJ_GRP_LOCK_DEBUG) can turn their holder tracking on without a rebuild; plexus can:
//
//   * set PLEXUS_REF_DEBUG=1 in the environment before the process starts, or
//   * call EnableRefDebugging(true) at any time.
//
// While on, every reference taken through Ref<T>, RefCounted::AddRef or GroupLock::AddRef
// records its holder: the source location that took it and the thread. RefDebugReport() lists,
// per live object, its holders; at process exit a leak report names every tracked object that
// is still alive, with its holders (printed through the log sink at error level).
//
// While off, each reference operation pays one predictable branch on a relaxed atomic load;
// nothing is recorded. Objects and references that existed before debugging was switched on
// are not listed (their holders were never seen); dropping such a reference is harmless.
//
// Holder matching: a Ref<T> is its own holder key, so the record follows the Ref through
// moves and is removed exactly when that Ref lets go. A bare AddRef/DecRef pair (PJLIB's
// style) has no key; DecRef then removes the newest keyless holder taken in the same source
// file, or failing that the newest keyless holder (PJLIB matches on the file only).
//
// Thread safety: thread-safe. The tracking tables are sharded by object address, each shard
// behind its own mutex; reports take a consistent snapshot per shard.

#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "plexus/core/source_location.h"

namespace plexus {

// Switches reference debugging on or off for the whole process. Returns the previous state.
// Switching on also arranges for the leak report to run at exit (once).
bool EnableRefDebugging(bool on);
bool RefDebuggingEnabled() noexcept;

// One recorded holder of a reference.
struct RefHolder {
  SourceLocation where;  // where the reference was taken
  std::uint32_t thread;  // CurrentThreadNumber() of the taker
  const void* key;       // the Ref<T> holding it, or nullptr for a bare AddRef
};

// A tracked live object and its recorded holders, oldest first.
struct TrackedObject {
  const void* object;
  std::string type_name;  // demangled static type the references were taken through
  std::vector<RefHolder> holders;
};

// The recorded holders of `object` (empty when debugging is off or none were recorded).
std::vector<RefHolder> RefHoldersOf(const void* object);

// Every tracked object that is alive and has at least one recorded holder.
std::vector<TrackedObject> LiveTrackedObjects();

// A human-readable listing of LiveTrackedObjects(); when debugging is off it says so.
std::string RefDebugReport();

// Logs RefDebugReport() as a leak report if any tracked object is alive. Returns the number of
// leaked objects. Runs automatically at exit once debugging has been switched on; the
// environment variable PLEXUS_REF_DEBUG_EXIT_CODE=<n> makes that exit-time report end the
// process with status n when it found a leak (for CI).
std::size_t ReportRefLeaks();

namespace core_internal {

// The hooks the reference-counted types call. They are only called while debugging is on,
// except RefTrackDestroyed, which runs whenever debugging was ever on.
void RefTrackAdd(const void* object, const char* type_name, const void* key, SourceLocation where);
void RefTrackDrop(const void* object, const void* key, SourceLocation where);
void RefTrackMove(const void* object, const void* from_key, const void* to_key);
void RefTrackCopy(const void* object, const void* from_key, const void* to_key);
void RefTrackDestroyed(const void* object);

}  // namespace core_internal
}  // namespace plexus
