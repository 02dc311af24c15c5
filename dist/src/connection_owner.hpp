// What a Connection needs from the node that owns it: the private interface
// between dist::Connection and dist::Node (the Node implements it in its
// Impl; nothing outside dist/ sees it).
//
// Thread: the loop's thread only. No method destroys the Connection it is
// given: the owner destroys closed connections on a later loop turn.
#pragma once

#include <uv.h>

#include <span>

#include "common/result.hpp"
#include "dist/node.hpp"

namespace beamlink::dist {

class Connection;

class ConnectionOwner {
 public:
  // Called once, synchronously, from Connection::close(): the connection
  // leaves the owner's table (the owner keeps the object alive until a later
  // loop turn) and the node-down events run.
  virtual void connection_closed(Connection& c, const Error& why) = 0;
  // One data frame from the peer. The handler may close this connection or
  // any other (the object stays valid until a later loop turn).
  virtual void dispatch(Connection& c, std::span<const char> control,
                        std::span<const char> message) = 0;
  // A write with data frames completed (status 0) while the connection is up.
  // Listeners may send (more frames) or close this connection.
  virtual void frames_written(Connection& c) = 0;
  // The connection has frames to write: the owner calls Connection::flush at
  // the end of this loop turn, once however many frames it gets.
  virtual void schedule_flush(Connection& c) = 0;
  virtual NodeStats& stats() = 0;
  virtual const NodeConfig& config() const = 0;
  virtual uv_loop_t* loop() const = 0;

 protected:
  ~ConnectionOwner() = default;
};

}  // namespace beamlink::dist
