#include "plexus/bus/message.h"

#include <exception>
#include <string>

#include "plexus/core/internal/run_catching.h"
#include "plexus/core/log.h"
#include "plexus/core/misuse.h"

namespace plexus {

bool bus_internal::CheckCreate(const MessageType* type, const std::type_info& payload,
                               bool has_payload, SourceLocation where) {
  if (type == nullptr) {
    ReportMisuse("Message::Create: a message needs a type", where);
    return false;
  }
  if (!has_payload) {
    ReportMisuse("Message::Create: a message of type '" + type->Name() + "' needs a payload",
                 where);
    return false;
  }
  if (type->PayloadType() != nullptr && *type->PayloadType() != payload) {
    ReportMisuse("Message::Create: type '" + type->Name() + "' carries " +
                     type->PayloadType()->name() + ", not " + payload.name(),
                 where);
    return false;
  }
  return !type->IsDeclined();
}

namespace {

std::optional<std::string> Render(
    const Message& m, const std::function<std::optional<std::string>(const Message&)>& fn,
    const char* what) {
  if (!fn) return std::nullopt;
  std::optional<std::string> rendered;
  core_internal::RunCatching(
      [&] { rendered = fn(m); },
      [&] { return std::string(what) + " formatter of '" + std::string(m.Type().Name()) + "'"; },
      SourceLocation::current());
  return rendered;
}

}  // namespace

std::optional<std::string> Message::ToJson() const {
  return Render(*this, type_->Formatters().to_json, "JSON");
}

std::optional<std::string> Message::ToText() const {
  return Render(*this, type_->Formatters().to_text, "text");
}

}  // namespace plexus
