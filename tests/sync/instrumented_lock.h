// InstrumentedLock: a recursive Lockable for group-lock tests. It records every lock and
// unlock in a shared EventLog (to observe the order in which a group takes and lets go of its
// chained locks) and checks ownership itself: an unlock by a thread that does not hold it is
// counted as a foreign unlock and otherwise ignored, so a test can assert that no thread ever
// let go of a lock it did not take.

#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace plexus_test {

class EventLog {
 public:
  void Add(std::string event) {
    std::lock_guard lock(mu_);
    events_.push_back(std::move(event));
  }
  std::vector<std::string> Events() const {
    std::lock_guard lock(mu_);
    return events_;
  }
  void Clear() {
    std::lock_guard lock(mu_);
    events_.clear();
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::string> events_;
};

class InstrumentedLock {
 public:
  explicit InstrumentedLock(std::string name, EventLog* log = nullptr)
      : name_(std::move(name)), log_(log) {}
  InstrumentedLock(const InstrumentedLock&) = delete;
  InstrumentedLock& operator=(const InstrumentedLock&) = delete;

  // Called on the locking thread right after each successful lock/try_lock, with no internal
  // mutex held (tests use it to look at other state at that moment).
  void set_on_lock(std::function<void()> hook) { on_lock_ = std::move(hook); }

  void lock() {
    {
      std::unique_lock lock(mu_);
      const std::thread::id me = std::this_thread::get_id();
      cv_.wait(lock, [&] { return depth_ == 0 || owner_ == me; });
      owner_ = me;
      ++depth_;
      ++acquisitions_;
    }
    Record("lock ");
    if (on_lock_) on_lock_();
  }

  bool try_lock() {
    {
      std::lock_guard lock(mu_);
      const std::thread::id me = std::this_thread::get_id();
      if (depth_ != 0 && owner_ != me) {
        ++failed_tries_;
        return false;
      }
      owner_ = me;
      ++depth_;
      ++acquisitions_;
    }
    Record("lock ");
    if (on_lock_) on_lock_();
    return true;
  }

  void unlock() {
    {
      std::lock_guard lock(mu_);
      if (depth_ == 0 || owner_ != std::this_thread::get_id()) {
        ++foreign_unlocks_;
        return;
      }
      if (--depth_ == 0) owner_ = std::thread::id();
    }
    cv_.notify_all();
    Record("unlock ");
  }

  const std::string& name() const { return name_; }
  bool IsFree() const {
    std::lock_guard lock(mu_);
    return depth_ == 0;
  }
  bool HeldByCurrentThread() const {
    std::lock_guard lock(mu_);
    return depth_ != 0 && owner_ == std::this_thread::get_id();
  }
  // How many times the owner holds it (0 when free).
  int depth() const {
    std::lock_guard lock(mu_);
    return depth_;
  }
  int foreign_unlocks() const {
    std::lock_guard lock(mu_);
    return foreign_unlocks_;
  }
  long acquisitions() const {
    std::lock_guard lock(mu_);
    return acquisitions_;
  }
  long failed_tries() const {
    std::lock_guard lock(mu_);
    return failed_tries_;
  }

 private:
  void Record(const char* what) {
    if (log_ != nullptr) log_->Add(what + name_);
  }

  const std::string name_;
  EventLog* const log_;
  std::function<void()> on_lock_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::thread::id owner_;
  int depth_ = 0;
  int foreign_unlocks_ = 0;
  long acquisitions_ = 0;
  long failed_tries_ = 0;
};

}  // namespace plexus_test
