// Builds reference files with the C++ FlatBufferBuilder, the way ONNX Runtime does.
#include <cstdio>
#include <vector>
#include <string>
#include "ort_generated.h"
#include "legacy_generated.h"
struct P { std::string name; std::vector<int64_t> dims; int dt; std::vector<uint8_t> raw; };
static std::vector<P> params() {
  std::vector<P> ps;
  auto bytes = [](int n, int seed) { std::vector<uint8_t> v(n); for (int i = 0; i < n; i++) v[i] = (uint8_t)(i * 7 + seed); return v; };
  ps.push_back({"m.lora_A.weight", {3, 2}, 1, bytes(24, 1)});
  ps.push_back({"m.lora_B.weight", {2, 5}, 10, bytes(20, 2)});
  ps.push_back({"scalar", {}, 7, bytes(8, 3)});
  ps.push_back({"empty", {0, 4}, 1, {}});
  ps.push_back({"odd.name.x", {5}, 3, bytes(5, 4)});
  return ps;
}
static void save(const char* path, flatbuffers::FlatBufferBuilder& b) {
  FILE* f = fopen(path, "wb"); fwrite(b.GetBufferPointer(), 1, b.GetSize(), f); fclose(f);
}
int main() {
  for (int force = 0; force < 2; force++) {
    flatbuffers::FlatBufferBuilder b;
    std::vector<flatbuffers::Offset<chk::ort::Parameter>> offs;
    for (auto& p : params()) {
      auto n = b.CreateString(p.name);
      auto d = b.CreateVector(p.dims.data(), p.dims.size());
      if (force) b.ForceVectorAlignment(p.raw.size(), 1, 8);
      auto r = b.CreateVector(p.raw.data(), p.raw.size());
      offs.push_back(chk::ort::CreateParameter(b, n, d, p.dt, r));
    }
    auto v = b.CreateVector(offs);
    auto root = chk::ort::CreateAdapter(b, 1, 3, 0, v);
    chk::ort::FinishAdapterBuffer(b, root);
    save(force ? "ref_ort_aligned.bin" : "ref_ort_unaligned.bin", b);
  }
  {
    flatbuffers::FlatBufferBuilder b;
    std::vector<flatbuffers::Offset<chk::legacy::Param>> offs;
    for (auto& p : params()) {
      auto n = b.CreateString(p.name);
      auto d = b.CreateVector(p.dims.data(), p.dims.size());
      auto r = b.CreateVector(p.raw.data(), p.raw.size());
      offs.push_back(chk::legacy::CreateParam(b, n, d, p.dt, r));
    }
    auto v = b.CreateVector(offs);
    chk::legacy::FinishParametersBuffer(b, chk::legacy::CreateParameters(b, 1, v));
    save("ref_legacy.bin", b);
  }
  return 0;
}
