#include "plexus/core/ref.h"

#include <string>
#include <typeinfo>

#include "plexus/core/misuse.h"

namespace plexus {

RefCounted::~RefCounted() = default;

void RefCounted::TrackAdd(SourceLocation where, const void* holder) const {
  core_internal::RefTrackAdd(this, typeid(*this).name(), holder, where);
}

void RefCounted::DestroySelf() const {
  if (core_internal::RefDebugEver()) core_internal::RefTrackDestroyed(this);
  LastReferenceDropped();
}

void RefCounted::LastReferenceDropped() const {
  delete this;
}

void RefCounted::OverRelease(SourceLocation where, std::int32_t n) const {
  // The count went below zero: restore it so the object is not touched by a second bogus
  // destruction, then report. Whoever released too much may already have freed it; this
  // check catches the cases where the memory is still ours.
  refs_.fetch_add(n, std::memory_order_relaxed);
  ReportMisuse("DecRef on an object with no references left (released more than taken)", where);
}

}  // namespace plexus
