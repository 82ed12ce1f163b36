#include "cdr_writer.h"

#include <sqlite3.h>

#include <cstdio>
#include <utility>

namespace sim {

namespace {

constexpr const char* kSchema =
    "DROP TABLE IF EXISTS cdr;"
    "CREATE TABLE cdr("
    "  call_id INTEGER PRIMARY KEY, device TEXT NOT NULL, callee TEXT NOT NULL,"
    "  disposition TEXT NOT NULL, cause TEXT NOT NULL, refreshes INTEGER NOT NULL,"
    "  planned_talk_ms INTEGER NOT NULL, start_us INTEGER NOT NULL, answer_us INTEGER,"
    "  end_us INTEGER NOT NULL);";

constexpr const char* kInsert =
    "INSERT INTO cdr(call_id, device, callee, disposition, cause, refreshes, planned_talk_ms,"
    " start_us, answer_us, end_us) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10);";

}  // namespace

CdrWriter::~CdrWriter() {
  (void)Close();
}

std::string CdrWriter::Open(const std::string& path, std::uint32_t queue_limit) {
  path_ = path.empty() ? ":memory:" : path;
  if (sqlite3_open(path_.c_str(), &db_) != SQLITE_OK) {
    std::string error = db_ != nullptr ? sqlite3_errmsg(db_) : "out of memory";
    sqlite3_close(db_);
    db_ = nullptr;
    return error;
  }
  char* error = nullptr;
  // WAL: readers (an operator's sqlite3 shell) never block the writer; NORMAL: a commit does
  // not wait for the disk, only a checkpoint does.
  const std::string setup =
      std::string("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;") + kSchema;
  if (sqlite3_exec(db_, setup.c_str(), nullptr, nullptr, &error) != SQLITE_OK) {
    std::string message = error != nullptr ? error : "schema";
    sqlite3_free(error);
    sqlite3_close(db_);
    db_ = nullptr;
    return message;
  }
  for (const auto& [sql, statement] :
       {std::pair{"BEGIN", &begin_}, std::pair{"COMMIT", &commit_},
        std::pair{"ROLLBACK", &rollback_}, std::pair{kInsert, &insert_}}) {
    if (sqlite3_prepare_v2(db_, sql, -1, statement, nullptr) != SQLITE_OK) {
      std::string message = sqlite3_errmsg(db_);
      FinalizeStatements();
      sqlite3_close(db_);
      db_ = nullptr;
      return message;
    }
  }
  writer_ = plexus::TaskProcessor::Create({.name = "sim/cdr-writer",
                                           .dedicated_thread = true,
                                           .high_water = queue_limit,
                                           .low_water = queue_limit / 2});
  return {};
}

void CdrWriter::Submit(std::vector<CallEnded> batch) {
  if (batch.empty() || !writer_) return;
  writer_->Push([this, b = std::move(batch)] { Write(b); });
}

namespace {
// Runs a prepared statement that returns no rows, ready to run again.
bool Step(sqlite3_stmt* statement) {
  const bool done = sqlite3_step(statement) == SQLITE_DONE;
  sqlite3_reset(statement);
  return done;
}
}  // namespace

void CdrWriter::FinalizeStatements() {
  for (sqlite3_stmt** statement : {&begin_, &commit_, &rollback_, &insert_}) {
    sqlite3_finalize(*statement);
    *statement = nullptr;
  }
}

void CdrWriter::Write(const std::vector<CallEnded>& batch) {
  sqlite3_stmt* insert = insert_;
  if (!Step(begin_)) {
    failures_.fetch_add(batch.size(), std::memory_order_relaxed);
    return;
  }
  std::uint64_t ok = 0;
  for (const CallEnded& r : batch) {
    const std::string device = DeviceName(r.device);
    const std::string callee = std::to_string(r.callee);
    sqlite3_bind_int64(insert, 1, static_cast<sqlite3_int64>(r.call_id));
    sqlite3_bind_text(insert, 2, device.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(insert, 3, callee.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(insert, 4, r.disposition, -1, SQLITE_STATIC);
    sqlite3_bind_text(insert, 5, r.cause, -1, SQLITE_STATIC);
    sqlite3_bind_int64(insert, 6, r.refreshes);
    sqlite3_bind_int64(insert, 7, r.planned_talk_ms);
    sqlite3_bind_int64(insert, 8, r.start_us);
    if (r.answer_us != 0) {
      sqlite3_bind_int64(insert, 9, r.answer_us);
    } else {
      sqlite3_bind_null(insert, 9);
    }
    sqlite3_bind_int64(insert, 10, r.end_us);
    if (sqlite3_step(insert) == SQLITE_DONE) ++ok;
    sqlite3_reset(insert);
  }
  if (!Step(commit_)) {
    (void)Step(rollback_);
    ok = 0;
  }
  written_.fetch_add(ok, std::memory_order_relaxed);
  failures_.fetch_add(batch.size() - ok, std::memory_order_relaxed);
  transactions_.fetch_add(1, std::memory_order_relaxed);
}

std::int64_t CdrWriter::Close() {
  if (writer_) {
    writer_->Shutdown(plexus::ShutdownMode::kDrain);
    max_depth_ = writer_->Stats().max_depth;
    writer_ = nullptr;
  }
  if (db_ == nullptr) return -1;
  FinalizeStatements();
  std::int64_t rows = -1;
  sqlite3_stmt* count = nullptr;
  if (sqlite3_prepare_v2(db_, "SELECT COUNT(*) FROM cdr", -1, &count, nullptr) == SQLITE_OK &&
      sqlite3_step(count) == SQLITE_ROW) {
    rows = sqlite3_column_int64(count, 0);
  }
  sqlite3_finalize(count);
  sqlite3_close(db_);
  db_ = nullptr;
  return rows;
}

}  // namespace sim
