// A vector that keeps its first N elements inline: a publish's forward targets and visited
// topics, which are almost always a handful, then cost no allocation.

#pragma once

#include <array>
#include <cstddef>
#include <utility>
#include <vector>

namespace plexus::bus_internal {

template <class T, std::size_t N>
class SmallVector {
 public:
  void push_back(T value) {
    if (size_ < N) {
      inline_[size_] = std::move(value);
    } else {
      overflow_.push_back(std::move(value));
    }
    ++size_;
  }
  T pop_back() {
    --size_;
    if (size_ >= N) {
      T value = std::move(overflow_.back());
      overflow_.pop_back();
      return value;
    }
    return std::exchange(inline_[size_], T());
  }
  bool contains(const T& value) const {
    for (std::size_t i = 0; i < size_ && i < N; ++i) {
      if (inline_[i] == value) return true;
    }
    for (const T& v : overflow_) {
      if (v == value) return true;
    }
    return false;
  }
  bool empty() const noexcept { return size_ == 0; }
  std::size_t size() const noexcept { return size_; }

 private:
  std::array<T, N> inline_{};
  std::vector<T> overflow_;
  std::size_t size_ = 0;
};

}  // namespace plexus::bus_internal
