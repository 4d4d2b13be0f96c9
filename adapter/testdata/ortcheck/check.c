// Loads .onnx_adapter files with ONNX Runtime and runs lora-inputs-ort with
// each: input = identity, so output = W + A·B. The files come from
// TestWriteORTCheckFiles (A [4,2], B [2,4]); for them the output must be
// 2 4 6 8 15 26 37 48 20 32 44 56 33 54 75 96. "GAIL" files must be refused.
#include <stdio.h>
#include <stdlib.h>
#include "onnxruntime_c_api.h"
static const OrtApi* api;
static int fail(OrtStatus* s, const char* what) {
  if (!s) return 0;
  printf("%s: ERROR %s\n", what, api->GetErrorMessage(s));
  api->ReleaseStatus(s);
  return 1;
}
static char* readall(const char* p, size_t* n) {
  FILE* f = fopen(p, "rb"); if (!f) return NULL;
  fseek(f, 0, SEEK_END); *n = ftell(f); fseek(f, 0, SEEK_SET);
  char* b = malloc(*n);
  if (fread(b, 1, *n, f) != *n) { fclose(f); free(b); return NULL; }
  fclose(f); return b;
}
int main(int argc, char** argv) {
  api = OrtGetApiBase()->GetApi(ORT_API_VERSION);
  OrtEnv* env; if (fail(api->CreateEnv(ORT_LOGGING_LEVEL_ERROR, "x", &env), "env")) return 1;
  OrtSession* sess = NULL;
  OrtSessionOptions* so;
  if (fail(api->CreateSessionOptions(&so), "options")) return 1;
  if (fail(api->CreateSession(env, argv[1], so, &sess), "session")) return 1;
  for (int i = 2; i < argc; i++) {
    size_t n; char* b = readall(argv[i], &n);
    if (!b) { printf("%s: cannot read\n", argv[i]); continue; }
    OrtLoraAdapter* ad = NULL;
    if (fail(api->CreateLoraAdapterFromArray(b, n, NULL, &ad), argv[i])) continue;
    printf("%s: loaded\n", argv[i]);
    OrtRunOptions* ro;
    if (fail(api->CreateRunOptions(&ro), "run options")) return 1;
    if (fail(api->RunOptionsAddActiveLoraAdapter(ro, ad), "activate")) continue;
    OrtMemoryInfo* mi;
    if (fail(api->CreateCpuMemoryInfo(OrtArenaAllocator, OrtMemTypeDefault, &mi), "memory info")) return 1;
    float in[16]; for (int k = 0; k < 16; k++) in[k] = (k % 5 == 0) ? 1.0f : 0.0f; // identity
    int64_t shape[2] = {4, 4};
    OrtValue* iv = NULL;
    if (fail(api->CreateTensorWithDataAsOrtValue(mi, in, sizeof in, shape, 2, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, &iv), "input")) return 1;
    const char* inames[] = {"input"}; const char* onames[] = {"output"};
    OrtValue* ov = NULL;
    if (fail(api->Run(sess, ro, inames, (const OrtValue* const*)&iv, 1, onames, 1, &ov), "run")) continue;
    float* out;
    if (fail(api->GetTensorMutableData(ov, (void**)&out), "output")) return 1;
    printf("output:");
    for (int k = 0; k < 16; k++) printf(" %g", out[k]);
    printf("\n");
  }
  return 0;
}
