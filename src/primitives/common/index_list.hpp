// Intrusive doubly linked lists over the elements of one array, linked by index: the
// least-recently-used orders and per-owner lists of stages that keep a fixed table of
// state (senders, partial messages) allocated in configure(). Linking and unlinking touch
// only the links; nothing is allocated.
//
//   struct Sender { ...; IndexLinks lru; };
//   IndexList<Sender, &Sender::lru> lru_;
//   lru_.push_front(senders_.data(), i);    // most recent first
//   lru_.remove(senders_.data(), i);
//   const std::uint32_t victim = lru_.back();
//
// The array is passed to every call that follows links, so the list holds no pointer that
// a reallocation could leave dangling. An element is in at most one list per IndexLinks
// member; pushing one that is already linked there corrupts the list.
#pragma once

#include <cstdint>
#include <limits>

namespace tmc::detail {

inline constexpr std::uint32_t kNoIndex = std::numeric_limits<std::uint32_t>::max();

/// The links an element carries for one list (kNoIndex: none).
struct IndexLinks {
  std::uint32_t prev = kNoIndex;
  std::uint32_t next = kNoIndex;
};

template <class Node, IndexLinks Node::*Links>
class IndexList {
 public:
  [[nodiscard]] bool empty() const noexcept { return head_ == kNoIndex; }
  /// The first element, kNoIndex when empty.
  [[nodiscard]] std::uint32_t front() const noexcept { return head_; }
  /// The last element, kNoIndex when empty.
  [[nodiscard]] std::uint32_t back() const noexcept { return tail_; }
  /// The element after `i` (kNoIndex after the last).
  [[nodiscard]] static std::uint32_t next(const Node* nodes, std::uint32_t i) noexcept {
    return (nodes[i].*Links).next;
  }

  void push_front(Node* nodes, std::uint32_t i) noexcept {
    IndexLinks& l = nodes[i].*Links;
    l.prev = kNoIndex;
    l.next = head_;
    if (head_ != kNoIndex) (nodes[head_].*Links).prev = i;
    head_ = i;
    if (tail_ == kNoIndex) tail_ = i;
  }

  void push_back(Node* nodes, std::uint32_t i) noexcept {
    IndexLinks& l = nodes[i].*Links;
    l.next = kNoIndex;
    l.prev = tail_;
    if (tail_ != kNoIndex) (nodes[tail_].*Links).next = i;
    tail_ = i;
    if (head_ == kNoIndex) head_ = i;
  }

  /// Unlink `i` (which is in this list); its links are cleared.
  void remove(Node* nodes, std::uint32_t i) noexcept {
    IndexLinks& l = nodes[i].*Links;
    if (l.prev != kNoIndex) {
      (nodes[l.prev].*Links).next = l.next;
    } else if (head_ == i) {
      head_ = l.next;
    }
    if (l.next != kNoIndex) {
      (nodes[l.next].*Links).prev = l.prev;
    } else if (tail_ == i) {
      tail_ = l.prev;
    }
    l.prev = l.next = kNoIndex;
  }

  /// Move `i` (in this list) to the front: it was used just now.
  void move_to_front(Node* nodes, std::uint32_t i) noexcept {
    if (head_ == i) return;
    remove(nodes, i);
    push_front(nodes, i);
  }

  /// Move `i` (in this list) to the back.
  void move_to_back(Node* nodes, std::uint32_t i) noexcept {
    if (tail_ == i) return;
    remove(nodes, i);
    push_back(nodes, i);
  }

  /// Forget every element (their links are left as they are).
  void clear() noexcept { head_ = tail_ = kNoIndex; }

 private:
  std::uint32_t head_ = kNoIndex;
  std::uint32_t tail_ = kNoIndex;
};

}  // namespace tmc::detail
