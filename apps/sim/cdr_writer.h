// CdrWriter stores call-detail records in SQLite: one row per finished call, in the table
// `cdr`. The database is in WAL mode and written in batched transactions on a TaskProcessor
// with a dedicated thread of its own, so a slow disk holds up that thread only, never the bus
// or the calls.
//
// Thread safety: Submit from any thread; Close once, after the last Submit.

#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "messages.h"
#include "plexus/core/ref.h"
#include "plexus/exec/task_processor.h"

struct sqlite3;
struct sqlite3_stmt;

namespace sim {

class CdrWriter {
 public:
  CdrWriter() = default;
  ~CdrWriter();
  CdrWriter(const CdrWriter&) = delete;
  CdrWriter& operator=(const CdrWriter&) = delete;

  // Opens (creating) the database at `path` (":memory:" or empty: in memory) and its table,
  // emptied. Returns an error message, empty on success.
  std::string Open(const std::string& path, std::uint32_t queue_limit);

  // Queues a batch of records to be written in one transaction.
  void Submit(std::vector<CallEnded> batch);

  // Writes what is queued, then counts the rows in the table and closes the database.
  // Returns the row count (-1 if it could not be read).
  std::int64_t Close();

  bool Congested() const { return writer_ && writer_->IsAlerted(); }
  std::uint64_t Written() const { return written_.load(std::memory_order_relaxed); }
  std::uint64_t Failures() const { return failures_.load(std::memory_order_relaxed); }
  std::uint64_t Transactions() const { return transactions_.load(std::memory_order_relaxed); }
  std::size_t MaxDepth() const { return writer_ ? writer_->Stats().max_depth : max_depth_; }
  const std::string& Path() const { return path_; }

 private:
  void Write(const std::vector<CallEnded>& batch);
  void FinalizeStatements();

  std::string path_;
  sqlite3* db_ = nullptr;  // used by the writer's thread only, between Open and Close
  // Prepared once by Open (a batch's transaction would otherwise parse four statements).
  sqlite3_stmt* begin_ = nullptr;
  sqlite3_stmt* commit_ = nullptr;
  sqlite3_stmt* rollback_ = nullptr;
  sqlite3_stmt* insert_ = nullptr;
  plexus::Ref<plexus::TaskProcessor> writer_;
  std::atomic<std::uint64_t> written_{0};
  std::atomic<std::uint64_t> failures_{0};
  std::atomic<std::uint64_t> transactions_{0};
  std::size_t max_depth_ = 0;  // kept when the writer goes
};

}  // namespace sim
