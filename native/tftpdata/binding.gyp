{
  "targets": [
    {
      "target_name": "tftpdata",
      "sources": ["tftpdata.c"],
      "cflags": ["-Wall", "-O2", "-pthread"]
    }
  ]
}
