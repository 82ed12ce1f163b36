#include "plexus/core/source_location.h"

namespace plexus {

std::string FormatLocation(const SourceLocation& where) {
  if (where.line() == 0 && (where.file_name() == nullptr || *where.file_name() == '\0')) {
    return "<unknown location>";
  }
  return std::string(where.file_name()) + ":" + std::to_string(where.line());
}

std::string FormatLocationLong(const SourceLocation& where) {
  std::string out = FormatLocation(where);
  if (where.function_name() != nullptr && *where.function_name() != '\0') {
    out += " (";
    out += where.function_name();
    out += ")";
  }
  return out;
}

}  // namespace plexus
