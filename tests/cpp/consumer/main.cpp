// Top-2 of one query over three items, through an installed recforge core.
#include <cstdint>
#include <cstdio>

#include "recforge/topk.hpp"

int main() {
    const float query[2] = {1.0f, 2.0f};
    const float items[6] = {1.0f, 0.0f, 0.0f, 1.0f, 1.0f, 1.0f};  // scores 1, 2, 3
    std::int64_t ids[2];
    float scores[2];
    recforge::topk_dense(query, 1, items, 3, 2, 2, nullptr, 0, nullptr, ids, scores, 1);
    std::printf("consumer: top-2 ids %lld %lld\n", static_cast<long long>(ids[0]), static_cast<long long>(ids[1]));
    return ids[0] == 2 && ids[1] == 1 ? 0 : 1;
}
