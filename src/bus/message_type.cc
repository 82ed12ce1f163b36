#include "plexus/bus/message_type.h"

#include <deque>
#include <memory>
#include <set>
#include <string>

#include "message_type_registry.h"
#include "plexus/bus/message.h"
#include "plexus/core/log.h"
#include "plexus/core/misuse.h"

namespace plexus {

MessageTypeRegistry& MessageTypeRegistry::Get() {
  static auto* registry = new MessageTypeRegistry();
  return *registry;
}

const MessageType* MessageTypeRegistry::Add(std::string_view name, const std::type_info* payload,
                                            MessageFormatters formatters, bool declinable) {
  MutexLock lock(mu);
  const bool is_declined = declinable && declined.find(name) != declined.end();
  types.push_back(std::unique_ptr<MessageType>(
      new MessageType(std::string(name), static_cast<std::uint32_t>(types.size()), payload,
                      std::move(formatters), is_declined)));
  return types.back().get();
}

namespace {

MessageFormats FormatsOf(const MessageFormatters& f) {
  MessageFormats formats = MessageFormat::kNone;
  if (f.to_json) formats = formats | MessageFormat::kJson;
  if (f.to_text) formats = formats | MessageFormat::kText;
  return formats;
}

}  // namespace

MessageType::MessageType(std::string name, std::uint32_t id, const std::type_info* payload,
                         MessageFormatters formatters, bool declined)
    : name_(std::move(name)),
      id_(id),
      declined_(declined),
      formats_(FormatsOf(formatters)),
      payload_(payload),
      formatters_(std::move(formatters)) {}

const MessageType* MessageType::Create(std::string_view name, MessageFormatters formatters,
                                       SourceLocation where) {
  if (name.empty()) {
    ReportMisuse("MessageType::Create: a message type needs a name", where);
    return nullptr;
  }
  return MessageTypeRegistry::Get().Add(name, nullptr, std::move(formatters));
}

const MessageType* MessageType::CreateFor(const std::type_info& payload, std::string_view name,
                                          MessageFormatters formatters, SourceLocation where) {
  if (name.empty()) {
    ReportMisuse("MessageType::Create: a message type needs a name", where);
    return nullptr;
  }
  return MessageTypeRegistry::Get().Add(name, &payload, std::move(formatters));
}

std::vector<const MessageType*> MessageType::All() {
  MessageTypeRegistry& r = MessageTypeRegistry::Get();
  MutexLock lock(r.mu);
  std::vector<const MessageType*> out;
  out.reserve(r.types.size());
  for (const auto& t : r.types) out.push_back(t.get());
  return out;
}

void DeclineMessageTypes(const std::vector<std::string>& names) {
  MessageTypeRegistry& r = MessageTypeRegistry::Get();
  MutexLock lock(r.mu);
  r.declined.insert(names.begin(), names.end());
}

void ClearDeclinedMessageTypes() {
  MessageTypeRegistry& r = MessageTypeRegistry::Get();
  MutexLock lock(r.mu);
  r.declined.clear();
}

}  // namespace plexus
