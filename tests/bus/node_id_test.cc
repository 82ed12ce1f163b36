// NodeId: parsing and printing the colon-separated form, the none id, and the local node's id,
// which is chosen once, locally administered and settable (messages made later carry the new
// one).

#include <optional>
#include <string>

#include "bus/bus_test_support.h"
#include "exec/exec_test_support.h"
#include "gtest/gtest.h"
#include "plexus/bus/bus.h"

namespace plexus {
namespace {

using plexus_test::IntType;

TEST(BusUnit, NodeIdParseAndToString) {
  const std::optional<NodeId> id = NodeId::Parse("02:1a:2b:3c:4d:ff");
  ASSERT_TRUE(id.has_value());
  EXPECT_FALSE(id->IsNone());
  EXPECT_EQ(id->bytes(), (NodeId::Bytes{0x02, 0x1a, 0x2b, 0x3c, 0x4d, 0xff}));
  EXPECT_EQ(id->ToString(), "02:1a:2b:3c:4d:ff");
  EXPECT_EQ(NodeId::Parse(id->ToString()), id);
  EXPECT_EQ(NodeId::Parse("00:00:00:00:00:00")->ToString(), "00:00:00:00:00:00");
  EXPECT_FALSE(NodeId::Parse("00:00:00:00:00:00")->IsNone());  // all zeros is still a node
  for (const char* bad :
       {"", "none", "02:1a:2b:3c:4d", "02:1a:2b:3c:4d:ff:00", "zz:1a:2b:3c:4d:ff", "021a2b3c4dff",
        "02-1a-2b-3c-4d-ff", "02:1a:2b:3c:4d:fff", "102:1a:2b:3c:4d:ff", "02:1a:2b:3c:4d:ff "}) {
    EXPECT_FALSE(NodeId::Parse(bad).has_value()) << '"' << bad << '"';
  }
  EXPECT_EQ(NodeId::None().ToString(), "none");
  EXPECT_TRUE(NodeId().IsNone());
  EXPECT_EQ(NodeId(), NodeId::None());
  EXPECT_FALSE(NodeId::None().IsLocal());
}

TEST(BusUnit, LocalNodeIdIsLocallyAdministeredAndSettable) {
  const NodeId local = NodeId::Local();
  EXPECT_FALSE(local.IsNone());
  EXPECT_TRUE(local.IsLocal());
  EXPECT_EQ(NodeId::Local(), local);  // chosen once
  EXPECT_NE(local.bytes()[0] & 0x02, 0) << local.ToString();

  const NodeId configured = *NodeId::Parse("0a:0b:0c:0d:0e:0f");
  Ref<Message> before = IntType().Make(1);
  SetLocalNodeId(configured);
  plexus_test::ScopeExit restore([&] { SetLocalNodeId(local); });
  EXPECT_EQ(NodeId::Local(), configured);
  EXPECT_TRUE(configured.IsLocal());
  Ref<Message> after = IntType().Make(2);
  EXPECT_EQ(after->Node(), configured);
  EXPECT_EQ(before->Node(), local);  // made earlier: keeps its id
}

}  // namespace
}  // namespace plexus
