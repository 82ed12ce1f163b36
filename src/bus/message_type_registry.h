// Every message type ever created (types live until the process ends) and the decline list.

#pragma once

#include <deque>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <typeinfo>

#include "plexus/bus/message_type.h"
#include "plexus/core/thread_annotations.h"
#include "plexus/sync/mutex.h"

namespace plexus {

struct MessageTypeRegistry {
  Mutex mu;
  std::deque<std::unique_ptr<MessageType>> types PLEXUS_GUARDED_BY(mu);  // index == id
  std::set<std::string, std::less<>> declined PLEXUS_GUARDED_BY(mu);

  static MessageTypeRegistry& Get();
  // `declinable` false: the bus's own types, which configuration must not switch off.
  const MessageType* Add(std::string_view name, const std::type_info* payload,
                         MessageFormatters formatters, bool declinable = true) PLEXUS_EXCLUDES(mu);
};

}  // namespace plexus
