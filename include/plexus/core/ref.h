// -----------------------------------------------------------------------------
// plexus/core/ref.h
// -----------------------------------------------------------------------------
//
// Intrusive reference counting.
//
//   Liveness      what dropping a reference says: the object lives on, or it is gone.
//   RefCounted    a base class holding the count inside the object (one allocation per object).
//   Ref<T>        the smart pointer: one atomic increment per copy, none per move.
//   MakeRef<T>()  allocates a T and returns the one reference it starts with.
//
// Ref<T> works with any type that provides
//     void AddRef(SourceLocation where, const void* holder) const;
//     Liveness DecRef(SourceLocation where, const void* holder) const;
// which RefCounted and plexus::GroupLock both do. Every operation that takes a reference
// records the caller's SourceLocation when reference debugging is on (ref_debug.h), so a leak
// report points at the line that took the reference that was never let go.
//
// Thread safety: RefCounted's count is thread-safe (any thread may add or drop references on
// a live object). A Ref<T> object itself is thread-compatible, like std::shared_ptr: distinct
// Ref objects pointing at the same T may be used from different threads; one Ref object must
// not be written by one thread while another reads it.
//
// Misuse (ReportMisuse, misuse.h) found while a Ref takes or drops a reference, such as
// dropping a reference on an object that has none left or taking one on a destroyed group
// lock: Reset reports it like any other call (under MisuseAction::kThrow it throws
// UsageError). The constructors, the assignments and the destructor are noexcept, as
// destructors and moves must be for containers and unwinding to work, so under kThrow a
// misuse found there ends the process with std::terminate once the report is logged; under
// kLog it is logged and the Ref is left empty (or holding its new target).
//
// Memory ordering: dropping a reference is a release operation and the drop that destroys
// the object is also an acquire, so every write made through any reference happens-before
// the destructor.

#pragma once

#include <atomic>
#include <compare>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <typeinfo>
#include <utility>

#include "plexus/core/internal/ref_debug_flag.h"
#include "plexus/core/ref_debug.h"
#include "plexus/core/source_location.h"

namespace plexus {

// The result of dropping a reference or releasing a group lock.
enum class Liveness : bool { kAlive = false, kGone = true };

template <class T>
concept RefCountable = requires(const T& t, SourceLocation where, const void* holder) {
  t.AddRef(where, holder);
  { t.DecRef(where, holder) } -> std::same_as<Liveness>;
};

// -----------------------------------------------------------------------------
// RefCounted
// -----------------------------------------------------------------------------
//
// Base class for objects shared through Ref<T>. A new object starts with one reference, the
// creator's; MakeRef adopts it. The DecRef that drops the last reference deletes the object
// (through the virtual destructor) and returns Liveness::kGone.
//
// Dropping a reference that was not taken (the count would go below zero) is a misuse and is
// reported with the caller's location; the object is not touched further.
//
// Thread safety: AddRef/DecRef/RefCount are thread-safe.
class RefCounted {
 public:
  RefCounted(const RefCounted&) = delete;
  RefCounted& operator=(const RefCounted&) = delete;

  // Takes a reference. `holder` identifies the holder for reference debugging (Ref<T> passes
  // itself); a bare call leaves it null.
  void AddRef(SourceLocation where = SourceLocation::current(),
              const void* holder = nullptr) const noexcept {
    if (core_internal::RefDebugOn()) TrackAdd(where, holder);
    refs_.fetch_add(1, std::memory_order_relaxed);
  }

  // Takes `n` references (n >= 0) with one atomic add: what a caller handing one reference to
  // each of n holders takes up front, where n AddRef calls would cost n read-modify-writes.
  // Reference debugging records n holders, each keyed `holder`; the caller re-keys each to the
  // holder it hands that reference to (RefTrackMove) or drops it with DecRefs.
  void AddRefs(std::int32_t n, SourceLocation where = SourceLocation::current(),
               const void* holder = nullptr) const noexcept {
    if (core_internal::RefDebugOn()) [[unlikely]] {
      for (std::int32_t i = 0; i < n; ++i) TrackAdd(where, holder);
    }
    refs_.fetch_add(n, std::memory_order_relaxed);
  }

  // Drops a reference; deletes the object and returns kGone when it was the last one.
  Liveness DecRef(SourceLocation where = SourceLocation::current(),
                  const void* holder = nullptr) const {
    if (core_internal::RefDebugOn()) core_internal::RefTrackDrop(this, holder, where);
    const std::int32_t previous = refs_.fetch_sub(1, std::memory_order_acq_rel);
    if (previous == 1) {
      DestroySelf();
      return Liveness::kGone;
    }
    if (previous < 1) OverRelease(where, 1);
    return Liveness::kAlive;
  }

  // Drops `n` references (n >= 1) with one atomic subtraction, as DecRef does n times: deletes
  // the object and returns kGone when they were the last ones. Dropping more than are held is
  // misuse, reported as DecRef reports it.
  Liveness DecRefs(std::int32_t n, SourceLocation where = SourceLocation::current(),
                   const void* holder = nullptr) const {
    if (core_internal::RefDebugOn()) [[unlikely]] {
      for (std::int32_t i = 0; i < n; ++i) core_internal::RefTrackDrop(this, holder, where);
    }
    const std::int32_t previous = refs_.fetch_sub(n, std::memory_order_acq_rel);
    if (previous == n) {
      DestroySelf();
      return Liveness::kGone;
    }
    if (previous < n) OverRelease(where, n);
    return Liveness::kAlive;
  }

  // Takes a reference only if the object still has one: for registries that keep plain
  // pointers to objects whose last reference may be dropping concurrently. Returns false
  // (and takes nothing) when the count already reached zero.
  bool TryAddRef(SourceLocation where = SourceLocation::current(),
                 const void* holder = nullptr) const noexcept {
    std::int32_t n = refs_.load(std::memory_order_relaxed);
    do {
      if (n <= 0) return false;
    } while (!refs_.compare_exchange_weak(n, n + 1, std::memory_order_relaxed));
    if (core_internal::RefDebugOn()) TrackAdd(where, holder);
    return true;
  }

  // A snapshot of the count; stale as soon as it is read unless the caller knows better.
  std::int32_t RefCount() const noexcept { return refs_.load(std::memory_order_relaxed); }

 protected:
  RefCounted() noexcept = default;
  virtual ~RefCounted();

  // Called once the last reference was dropped. The default deletes the object; a type whose
  // end needs more (waiting for work it runs, or deferring its deletion until that work
  // returns) overrides it and must eventually delete the object itself.
  virtual void LastReferenceDropped() const;

 private:
  void TrackAdd(SourceLocation where, const void* holder) const;
  void DestroySelf() const;
  // The count went below zero by dropping `n`: restores it and reports the misuse.
  void OverRelease(SourceLocation where, std::int32_t n) const;

  mutable std::atomic<std::int32_t> refs_{1};
};

// -----------------------------------------------------------------------------
// Ref<T>
// -----------------------------------------------------------------------------
template <class T>
class Ref {
 public:
  using element_type = T;

  constexpr Ref() noexcept = default;
  constexpr Ref(std::nullptr_t) noexcept {}  // NOLINT(google-explicit-constructor)

  // Shares `object`: takes a new reference on it (null is allowed).
  explicit Ref(T* object, SourceLocation where = SourceLocation::current()) noexcept
      : ptr_(object) {
    if (ptr_) ptr_->AddRef(where, this);
  }

  // Takes over a reference the caller already owns (from MakeRef's allocation, Release(), or
  // a C-style API that returns an owned pointer). No count change.
  static Ref Adopt(T* object, SourceLocation where = SourceLocation::current()) noexcept {
    Ref r;
    r.ptr_ = object;
    if (object && core_internal::RefDebugOn()) {
      core_internal::RefTrackAdd(object, typeid(T).name(), &r, where);
    }
    return r;
  }

  Ref(const Ref& other, SourceLocation where = SourceLocation::current()) noexcept
      : ptr_(other.ptr_) {
    if (ptr_) ptr_->AddRef(where, this);
  }

  template <class U>
  requires std::convertible_to<U*, T*> Ref(
      const Ref<U>& other,  // NOLINT(google-explicit-constructor)
      SourceLocation where = SourceLocation::current())
  noexcept : ptr_(other.get()) {
    if (ptr_) ptr_->AddRef(where, this);
  }

  Ref(Ref&& other) noexcept : ptr_(std::exchange(other.ptr_, nullptr)) {
    if (ptr_ && core_internal::RefDebugOn()) core_internal::RefTrackMove(ptr_, &other, this);
  }

  template <class U>
  requires std::convertible_to<U*, T*> Ref(Ref<U>&& other)
  noexcept  // NOLINT(google-explicit-constructor)
      : ptr_(std::exchange(other.ptr_, nullptr)) {
    if (ptr_ && core_internal::RefDebugOn()) core_internal::RefTrackMove(ptr_, &other, this);
  }

  // Copy assignment records the new holder at the location the source's reference was taken
  // (an assignment operator cannot capture its caller's location).
  Ref& operator=(const Ref& other) noexcept {
    if (this != &other) {
      T* incoming = other.ptr_;
      if (incoming) {
        incoming->AddRef(SourceLocation{}, this);
        if (core_internal::RefDebugOn()) core_internal::RefTrackCopy(incoming, &other, this);
      }
      DropCurrent(SourceLocation{});
      ptr_ = incoming;
    }
    return *this;
  }

  Ref& operator=(Ref&& other) noexcept {
    if (this != &other) {
      DropCurrent(SourceLocation{});
      ptr_ = std::exchange(other.ptr_, nullptr);
      if (ptr_ && core_internal::RefDebugOn()) core_internal::RefTrackMove(ptr_, &other, this);
    }
    return *this;
  }

  Ref& operator=(std::nullptr_t) noexcept {
    DropCurrent(SourceLocation{});
    return *this;
  }

  ~Ref() noexcept { DropCurrent(SourceLocation{}); }

  T* get() const noexcept { return ptr_; }
  T& operator*() const noexcept { return *ptr_; }
  T* operator->() const noexcept { return ptr_; }
  explicit operator bool() const noexcept { return ptr_ != nullptr; }

  // Drops the reference held (if any). Returns kGone when that destroyed the object. Not
  // noexcept: a misuse found by the drop is reported as the misuse action says (the Ref is
  // empty afterwards either way).
  Liveness Reset(SourceLocation where = SourceLocation::current()) { return DropCurrent(where); }

  // Gives up ownership without dropping the reference: the caller now owns it (and must pass
  // it to Adopt or DecRef eventually). Under reference debugging the holder record stays,
  // re-keyed as a bare reference taken where this Ref's was.
  [[nodiscard]] T* Detach() noexcept {
    if (ptr_ && core_internal::RefDebugOn()) core_internal::RefTrackMove(ptr_, this, nullptr);
    return std::exchange(ptr_, nullptr);
  }

  void swap(Ref& other) noexcept {
    if (this == &other) return;
    if (core_internal::RefDebugOn()) {
      // Re-key both holder records through a temporary key so they do not collide.
      const char temp = 0;
      if (ptr_) core_internal::RefTrackMove(ptr_, this, &temp);
      if (other.ptr_) core_internal::RefTrackMove(other.ptr_, &other, this);
      if (ptr_) core_internal::RefTrackMove(ptr_, &temp, &other);
    }
    std::swap(ptr_, other.ptr_);
  }
  friend void swap(Ref& a, Ref& b) noexcept { a.swap(b); }

  template <class U>
  friend bool operator==(const Ref& a, const Ref<U>& b) noexcept {
    return a.get() == b.get();
  }
  friend bool operator==(const Ref& a, std::nullptr_t) noexcept { return a.ptr_ == nullptr; }
  template <class U>
  friend std::strong_ordering operator<=>(const Ref& a, const Ref<U>& b) noexcept {
    return std::compare_three_way{}(a.get(), static_cast<const T*>(b.get()));
  }

 private:
  template <class U>
  friend class Ref;

  // Throws what DecRef throws; the noexcept callers above turn that into std::terminate.
  Liveness DropCurrent(SourceLocation where) {
    T* p = std::exchange(ptr_, nullptr);
    if (!p) return Liveness::kAlive;
    return p->DecRef(where, this);
  }

  T* ptr_ = nullptr;
};

// Allocates a T (which must derive from RefCounted or otherwise start with one reference)
// and returns a Ref owning that first reference.
//
// Reference debugging records this first reference at MakeRef's own line: a default
// SourceLocation argument cannot follow a parameter pack. Where the creating line matters
// (objects suspected of leaking), write Ref<T>::Adopt(new T(...)), which records the caller.
template <class T, class... Args>
Ref<T> MakeRef(Args&&... args) {
  return Ref<T>::Adopt(new T(std::forward<Args>(args)...));
}

}  // namespace plexus

template <class T>
struct std::hash<plexus::Ref<T>> {
  std::size_t operator()(const plexus::Ref<T>& r) const noexcept {
    return std::hash<const T*>{}(r.get());
  }
};
