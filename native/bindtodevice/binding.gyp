{
  "targets": [
    {
      "target_name": "bindtodevice",
      "sources": ["bindtodevice.c"],
      "cflags": ["-Wall", "-O2"]
    }
  ]
}
