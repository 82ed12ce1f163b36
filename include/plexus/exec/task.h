// -----------------------------------------------------------------------------
// plexus/exec/task.h
// -----------------------------------------------------------------------------
//
// Task is the unit of work the executors run: a move-only, type-erased `void()` callable,
// like absl::AnyInvocable or folly::Function, with inline storage so that the closures a
// server pushes (a few pointers and references) are queued without a heap allocation.
//
//   plexus::Task task = [session = Ref(session)] { session->OnTimeout(); };
//   processor->Push(std::move(task));
//
// A callable that is larger than kInlineSize bytes, over-aligned, or not nothrow-movable is
// stored on the heap (one allocation), so any callable works; only the cost differs.
//
// Thread safety: thread-compatible, like any value type. A Task is moved between threads by
// the executors; it is invoked by one thread at a time.

#pragma once

#include <cstddef>
#include <functional>
#include <new>
#include <type_traits>
#include <utility>

namespace plexus {

class Task {
 public:
  // Closures up to this size (six pointers) are stored inline.
  static constexpr std::size_t kInlineSize = 48;

  Task() noexcept = default;
  Task(std::nullptr_t) noexcept {}  // NOLINT(google-explicit-constructor)

  template <class F>
  requires(!std::is_same_v<std::remove_cvref_t<F>, Task> &&
           std::is_invocable_r_v<void, std::decay_t<F>&>)
      Task(
          F&& f) {  // NOLINT(google-explicit-constructor): a closure converts, as for std::function
    using Fn = std::decay_t<F>;
    if constexpr (std::is_pointer_v<Fn> || std::is_member_pointer_v<Fn>) {
      if (f == nullptr) return;  // a null function pointer makes an empty task
    }
    if constexpr (kStoredInline<Fn>) {
      ::new (static_cast<void*>(storage_)) Fn(std::forward<F>(f));
      ops_ = &kInlineOps<Fn>;
    } else {
      ::new (static_cast<void*>(storage_)) Fn*(new Fn(std::forward<F>(f)));
      ops_ = &kHeapOps<Fn>;
    }
  }

  Task(Task&& other) noexcept : ops_(other.ops_) {
    if (ops_ != nullptr) {
      ops_->relocate(other.storage_, storage_);
      other.ops_ = nullptr;
    }
  }

  Task& operator=(Task&& other) noexcept {
    if (this != &other) {
      Reset();
      if (other.ops_ != nullptr) {
        other.ops_->relocate(other.storage_, storage_);
        ops_ = std::exchange(other.ops_, nullptr);
      }
    }
    return *this;
  }

  Task(const Task&) = delete;
  Task& operator=(const Task&) = delete;

  ~Task() { Reset(); }

  // Runs the callable. Calling an empty Task is undefined (the executors refuse empty tasks
  // when they are pushed).
  void operator()() { ops_->invoke(storage_); }

  explicit operator bool() const noexcept { return ops_ != nullptr; }

  // Destroys the callable (and what it captured) now.
  void Reset() noexcept {
    if (ops_ != nullptr) {
      ops_->destroy(storage_);
      ops_ = nullptr;
    }
  }

  // Whether the callable lives in the Task itself (no allocation was made for it).
  bool IsInline() const noexcept { return ops_ != nullptr && ops_->is_inline; }

 private:
  struct Ops {
    void (*invoke)(void* storage);
    void (*relocate)(void* from, void* to) noexcept;  // move-construct into `to`, destroy `from`
    void (*destroy)(void* storage) noexcept;
    bool is_inline;
  };

  template <class Fn>
  static constexpr bool kStoredInline =
      sizeof(Fn) <= kInlineSize &&
      alignof(Fn) <= alignof(std::max_align_t) && std::is_nothrow_move_constructible_v<Fn>;

  template <class Fn>
  static constexpr Ops kInlineOps{[](void* s) { std::invoke(*static_cast<Fn*>(s)); },
                                  [](void* from, void* to) noexcept {
                                    ::new (to) Fn(std::move(*static_cast<Fn*>(from)));
                                    static_cast<Fn*>(from)->~Fn();
                                  },
                                  [](void* s) noexcept { static_cast<Fn*>(s)->~Fn(); }, true};

  template <class Fn>
  static constexpr Ops kHeapOps{
      [](void* s) { std::invoke(**static_cast<Fn**>(s)); },
      [](void* from, void* to) noexcept { ::new (to) Fn*(*static_cast<Fn**>(from)); },
      [](void* s) noexcept { delete *static_cast<Fn**>(s); }, false};

  alignas(std::max_align_t) unsigned char storage_[kInlineSize];
  const Ops* ops_ = nullptr;
};

}  // namespace plexus
