// pi-image's block-device addon (Linux only): what `pi-image flash` needs and Node.js cannot do
// on a block device. See native/README.md for the contract; src/host/native/block-device.ts is
// the typed wrapper the rest of pi-image uses.
//
// open(path, { write, exclusive, direct, bufferSize }) -> Promise<Handle>
// Handle: size() read(offset, length) write(offset, data) flush() rereadPartitions() close(),
//         all Promises run on libuv's thread pool; path, isBlockDevice, direct, writable,
//         logicalSectorSize, physicalSectorSize, bufferSize as properties.
//
// Every blocking call runs in a Napi::AsyncWorker, holding the handle's mutex, so calls on one
// handle run one at a time in the order they were made; the handle's aligned buffer is reused.

#include <napi.h>

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

// A failed system call, thrown inside a worker's Execute and turned into a JS Error on the main
// thread: errno, the call's name ("open", "pwrite", "ioctl BLKRRPART"), and what it means here.
struct SysError {
  int err = 0;
  std::string syscall;
  std::string detail;
};

std::string ErrnoName(int err) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  if (const char* name = strerrorname_np(err)) return name;
#endif
  return "";  // the TypeScript wrapper names it with util.getSystemErrorName
}

Napi::Value MakeError(Napi::Env env, const SysError& e, const std::string& path) {
  std::string code = ErrnoName(e.err);
  std::string message = (code.empty() ? "" : code + ": ") + std::strerror(e.err) + ", " + e.syscall + " '" + path + "'";
  if (!e.detail.empty()) message += " (" + e.detail + ")";
  Napi::Error error = Napi::Error::New(env, message);
  Napi::Object obj = error.Value();
  if (!code.empty()) obj.Set("code", code);
  obj.Set("errno", Napi::Number::New(env, -e.err));  // negative, as Node.js's own fs errors
  obj.Set("syscall", e.syscall);
  obj.Set("path", path);
  return obj;
}

struct Device {
  std::mutex mu;
  int fd = -1;
  std::string path;
  bool block = false;
  bool direct = false;
  bool writable = false;
  uint32_t logical = 512;
  uint32_t physical = 512;
  uint8_t* buf = nullptr;  // aligned to max(logical sector, page), `cap` bytes
  size_t cap = 0;

  ~Device() {
    if (fd >= 0) ::close(fd);
    std::free(buf);
  }

  void EnsureOpen(const char* syscall) const {
    if (fd < 0) throw SysError{EBADF, syscall, "the device is closed"};
  }

  uint64_t Size() const {
    if (block) {
      uint64_t bytes = 0;
      if (ioctl(fd, BLKGETSIZE64, &bytes) < 0) throw SysError{errno, "ioctl BLKGETSIZE64", ""};
      return bytes;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) throw SysError{errno, "fstat", ""};
    return static_cast<uint64_t>(st.st_size);
  }
};

uint64_t RoundUp(uint64_t n, uint64_t to) { return (n + to - 1) / to * to; }

// Reads up to `len` bytes; fewer only at the end of the file or device. With O_DIRECT a read
// may not continue from an unaligned position, so a short read that is not a whole number of
// sectors ends it (it happens only at the end of a regular file).
size_t PreadFull(const Device& dev, uint8_t* buf, size_t len, uint64_t offset) {
  size_t done = 0;
  while (done < len) {
    ssize_t r = pread(dev.fd, buf + done, len - done, static_cast<off_t>(offset + done));
    if (r < 0) {
      if (errno == EINTR) continue;
      throw SysError{errno, "pread", ""};
    }
    if (r == 0) break;
    done += static_cast<size_t>(r);
    if (done % dev.logical != 0) break;
  }
  return done;
}

void PwriteFull(const Device& dev, const uint8_t* buf, size_t len, uint64_t offset) {
  size_t done = 0;
  while (done < len) {
    ssize_t r = pwrite(dev.fd, buf + done, len - done, static_cast<off_t>(offset + done));
    if (r < 0) {
      if (errno == EINTR) continue;
      throw SysError{errno, "pwrite", ""};
    }
    if (r == 0) throw SysError{ENOSPC, "pwrite", "the device took no more bytes"};
    done += static_cast<size_t>(r);
  }
}

struct AddonData {
  Napi::FunctionReference handleConstructor;
};

// A Promise-returning call on the thread pool. Subclasses do the work in Run() (no JS there)
// and build the resolved value in Result() (main thread).
class Worker : public Napi::AsyncWorker {
 public:
  Worker(Napi::Env env, std::shared_ptr<Device> dev, std::string path)
      : Napi::AsyncWorker(env, "pi-image:block-device"),
        deferred_(Napi::Promise::Deferred::New(env)),
        dev_(std::move(dev)),
        path_(std::move(path)) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  virtual void Run() = 0;
  virtual Napi::Value Result(Napi::Env env) { return env.Undefined(); }

  void Execute() override {
    try {
      Run();
    } catch (const SysError& e) {
      error_ = e;
      SetError(e.syscall);
    } catch (const std::bad_alloc&) {
      error_ = SysError{ENOMEM, "malloc", ""};
      SetError("malloc");
    } catch (const std::exception& e) {
      error_ = SysError{EINVAL, "addon", e.what()};
      SetError(e.what());
    }
  }

  void OnOK() override {
    Napi::HandleScope scope(Env());
    deferred_.Resolve(Result(Env()));
  }

  void OnError(const Napi::Error&) override {
    Napi::HandleScope scope(Env());
    deferred_.Reject(MakeError(Env(), error_, path_));
  }

  Napi::Promise::Deferred deferred_;
  std::shared_ptr<Device> dev_;
  std::string path_;
  SysError error_;
};

class Handle : public Napi::ObjectWrap<Handle> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "BlockDeviceHandle",
                       {
                           InstanceAccessor<&Handle::GetPath>("path"),
                           InstanceAccessor<&Handle::GetIsBlockDevice>("isBlockDevice"),
                           InstanceAccessor<&Handle::GetDirect>("direct"),
                           InstanceAccessor<&Handle::GetWritable>("writable"),
                           InstanceAccessor<&Handle::GetLogical>("logicalSectorSize"),
                           InstanceAccessor<&Handle::GetPhysical>("physicalSectorSize"),
                           InstanceAccessor<&Handle::GetBufferSize>("bufferSize"),
                           InstanceMethod<&Handle::SizeMethod>("size"),
                           InstanceMethod<&Handle::ReadMethod>("read"),
                           InstanceMethod<&Handle::WriteMethod>("write"),
                           InstanceMethod<&Handle::FlushMethod>("flush"),
                           InstanceMethod<&Handle::RereadPartitionsMethod>("rereadPartitions"),
                           InstanceMethod<&Handle::CloseMethod>("close"),
                       });
  }

  explicit Handle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Handle>(info) {}

  void Attach(std::shared_ptr<Device> dev) { dev_ = std::move(dev); }

 private:
  Device& Dev(Napi::Env env) {
    if (!dev_) throw Napi::Error::New(env, "not a handle returned by open()");
    return *dev_;
  }

  Napi::Value GetPath(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), Dev(info.Env()).path); }
  Napi::Value GetIsBlockDevice(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), Dev(info.Env()).block); }
  Napi::Value GetDirect(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), Dev(info.Env()).direct); }
  Napi::Value GetWritable(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), Dev(info.Env()).writable); }
  Napi::Value GetLogical(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), Dev(info.Env()).logical); }
  Napi::Value GetPhysical(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), Dev(info.Env()).physical); }
  Napi::Value GetBufferSize(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), static_cast<double>(Dev(info.Env()).cap)); }

  // An offset or length argument: a non-negative safe integer.
  static uint64_t Position(const Napi::CallbackInfo& info, size_t i, const char* name) {
    Napi::Env env = info.Env();
    if (info.Length() <= i || !info[i].IsNumber()) throw Napi::TypeError::New(env, std::string(name) + " must be a number");
    double v = info[i].As<Napi::Number>().DoubleValue();
    if (!(v >= 0) || v > 9007199254740991.0 || v != static_cast<double>(static_cast<uint64_t>(v))) {
      throw Napi::RangeError::New(env, std::string(name) + " must be a non-negative integer");
    }
    return static_cast<uint64_t>(v);
  }

  static void CheckAligned(Napi::Env env, const Device& dev, uint64_t offset) {
    if (offset % dev.logical != 0) {
      throw Napi::RangeError::New(env, "offset " + std::to_string(offset) + " is not a multiple of the logical sector size " +
                                           std::to_string(dev.logical) + " of " + dev.path);
    }
  }

  class SizeWorker : public Worker {
   public:
    using Worker::Worker;
    void Run() override {
      std::lock_guard<std::mutex> lock(dev_->mu);
      dev_->EnsureOpen("size");
      size_ = dev_->Size();
    }
    Napi::Value Result(Napi::Env env) override { return Napi::Number::New(env, static_cast<double>(size_)); }
    uint64_t size_ = 0;
  };

  Napi::Value SizeMethod(const Napi::CallbackInfo& info) {
    Device& dev = Dev(info.Env());
    auto* w = new SizeWorker(info.Env(), dev_, dev.path);
    w->Queue();
    return w->Promise();
  }

  class ReadWorker : public Worker {
   public:
    ReadWorker(Napi::Env env, std::shared_ptr<Device> dev, std::string path, uint64_t offset, uint64_t length)
        : Worker(env, std::move(dev), std::move(path)), offset_(offset), length_(length) {}
    void Run() override {
      std::lock_guard<std::mutex> lock(dev_->mu);
      Device& d = *dev_;
      d.EnsureOpen("pread");
      data_.resize(length_);
      uint64_t done = 0;
      while (done < length_) {
        size_t n = static_cast<size_t>(std::min<uint64_t>(length_ - done, d.cap));
        size_t padded = static_cast<size_t>(RoundUp(n, d.logical));
        size_t got = PreadFull(d, d.buf, padded, offset_ + done);
        size_t take = std::min(got, n);
        std::memcpy(data_.data() + done, d.buf, take);
        done += take;
        if (got < padded) break;  // the end of the file or device
      }
      data_.resize(done);
    }
    Napi::Value Result(Napi::Env env) override { return Napi::Buffer<uint8_t>::Copy(env, data_.data(), data_.size()); }
    uint64_t offset_, length_;
    std::vector<uint8_t> data_;
  };

  Napi::Value ReadMethod(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Device& dev = Dev(env);
    uint64_t offset = Position(info, 0, "offset");
    uint64_t length = Position(info, 1, "length");
    CheckAligned(env, dev, offset);
    auto* w = new ReadWorker(env, dev_, dev.path, offset, length);
    w->Queue();
    return w->Promise();
  }

  class WriteWorker : public Worker {
   public:
    WriteWorker(Napi::Env env, std::shared_ptr<Device> dev, std::string path, uint64_t offset, Napi::Uint8Array data)
        : Worker(env, std::move(dev), std::move(path)),
          offset_(offset),
          src_(data.Data()),
          length_(data.ByteLength()),
          keep_(Napi::Persistent(static_cast<Napi::Value>(data))) {}
    void Run() override {
      std::lock_guard<std::mutex> lock(dev_->mu);
      Device& d = *dev_;
      d.EnsureOpen("pwrite");
      if (!d.writable) throw SysError{EBADF, "pwrite", "opened without write: true"};
      const uint64_t end = offset_ + length_;
      const uint64_t before = d.Size();
      if (d.block && end > before) {
        throw SysError{ENOSPC, "pwrite",
                       std::to_string(length_) + " bytes at offset " + std::to_string(offset_) + " end past the device's " +
                           std::to_string(before) + " bytes"};
      }
      size_t done = 0;
      while (done < length_) {
        size_t n = std::min(length_ - done, d.cap);
        uint64_t pos = offset_ + done;
        size_t padded = static_cast<size_t>(RoundUp(n, d.logical));
        if (padded != n) {
          // The final, partial sector: keep the bytes after the data as they are on the device.
          size_t tail = padded - d.logical;
          size_t got = PreadFull(d, d.buf + tail, d.logical, pos + tail);
          if (got < d.logical) std::memset(d.buf + tail + got, 0, d.logical - got);
        }
        std::memcpy(d.buf, src_ + done, n);
        PwriteFull(d, d.buf, padded, pos);
        done += n;
      }
      // A regular file grows to the end of the data, not to the end of its padded last sector.
      if (!d.block && RoundUp(end, d.logical) > std::max(end, before)) {
        if (ftruncate(d.fd, static_cast<off_t>(std::max(end, before))) < 0) throw SysError{errno, "ftruncate", ""};
      }
    }
    Napi::Value Result(Napi::Env env) override { return Napi::Number::New(env, static_cast<double>(length_)); }
    uint64_t offset_;
    const uint8_t* src_;
    size_t length_;
    Napi::Reference<Napi::Value> keep_;  // the caller's bytes stay alive until the write is done
  };

  Napi::Value WriteMethod(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Device& dev = Dev(env);
    uint64_t offset = Position(info, 0, "offset");
    if (info.Length() < 2 || !info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
      throw Napi::TypeError::New(env, "data must be a Buffer or Uint8Array");
    }
    CheckAligned(env, dev, offset);
    auto* w = new WriteWorker(env, dev_, dev.path, offset, info[1].As<Napi::Uint8Array>());
    w->Queue();
    return w->Promise();
  }

  class FlushWorker : public Worker {
   public:
    using Worker::Worker;
    void Run() override {
      std::lock_guard<std::mutex> lock(dev_->mu);
      dev_->EnsureOpen("fsync");
      if (fsync(dev_->fd) < 0) throw SysError{errno, "fsync", ""};
      // Drop the kernel's cached copy so a later (non-direct) read sees the device. Needs
      // CAP_SYS_ADMIN; without it the fsync above has already made the data durable.
      if (dev_->block && ioctl(dev_->fd, BLKFLSBUF, 0) < 0 && errno != EPERM && errno != EACCES) {
        throw SysError{errno, "ioctl BLKFLSBUF", ""};
      }
    }
  };

  Napi::Value FlushMethod(const Napi::CallbackInfo& info) {
    Device& dev = Dev(info.Env());
    auto* w = new FlushWorker(info.Env(), dev_, dev.path);
    w->Queue();
    return w->Promise();
  }

  class RereadWorker : public Worker {
   public:
    using Worker::Worker;
    void Run() override {
      std::lock_guard<std::mutex> lock(dev_->mu);
      dev_->EnsureOpen("ioctl BLKRRPART");
      if (!dev_->block) return;  // a regular file has no partitions for the kernel to reread
      for (int attempt = 1;; ++attempt) {
        if (ioctl(dev_->fd, BLKRRPART) == 0) return;
        int err = errno;
        if (err == EBUSY && attempt < 5) {  // udev may be probing a partition for a moment
          std::this_thread::sleep_for(std::chrono::milliseconds(200));
          continue;
        }
        std::string detail;
        if (err == EINVAL) detail = "the kernel does not partition this device, e.g. a loop device set up without --partscan";
        if (err == EBUSY) detail = "a partition of the device is mounted or open";
        if (err == EACCES || err == EPERM) detail = "rereading partitions needs CAP_SYS_ADMIN";
        throw SysError{err, "ioctl BLKRRPART", detail};
      }
    }
  };

  Napi::Value RereadPartitionsMethod(const Napi::CallbackInfo& info) {
    Device& dev = Dev(info.Env());
    auto* w = new RereadWorker(info.Env(), dev_, dev.path);
    w->Queue();
    return w->Promise();
  }

  class CloseWorker : public Worker {
   public:
    using Worker::Worker;
    void Run() override {
      std::lock_guard<std::mutex> lock(dev_->mu);
      if (dev_->fd < 0) return;  // closing twice is harmless
      int r = ::close(dev_->fd);
      int err = errno;
      dev_->fd = -1;
      std::free(dev_->buf);
      dev_->buf = nullptr;
      if (r < 0 && err != EINTR) throw SysError{err, "close", ""};
    }
  };

  Napi::Value CloseMethod(const Napi::CallbackInfo& info) {
    Device& dev = Dev(info.Env());
    auto* w = new CloseWorker(info.Env(), dev_, dev.path);
    w->Queue();
    return w->Promise();
  }

  std::shared_ptr<Device> dev_;
};

class OpenWorker : public Worker {
 public:
  OpenWorker(Napi::Env env, std::string path, bool write, bool exclusive, bool direct, size_t bufferSize)
      : Worker(env, std::make_shared<Device>(), path), write_(write), exclusive_(exclusive), direct_(direct), bufferSize_(bufferSize) {
    dev_->path = std::move(path);
  }

  void Run() override {
    Device& d = *dev_;
    int flags = (write_ ? O_RDWR : O_RDONLY) | O_CLOEXEC | (exclusive_ ? O_EXCL : 0) | (direct_ ? O_DIRECT : 0);
    int fd;
    do fd = ::open(d.path.c_str(), flags);
    while (fd < 0 && errno == EINTR);
    if (fd < 0) {
      int err = errno;
      std::string detail;
      if (err == EBUSY) detail = "the device is mounted or in use: unmount its partitions first";
      if (err == EINVAL && direct_) detail = "the file system does not support O_DIRECT";
      if (err == EACCES || err == EPERM) detail = "writing to a disk needs root or the disk group";
      throw SysError{err, "open", detail};
    }
    d.fd = fd;  // closed by ~Device if anything below fails
    d.direct = direct_;
    d.writable = write_;
    struct stat st;
    if (fstat(fd, &st) < 0) throw SysError{errno, "fstat", ""};
    if (S_ISBLK(st.st_mode)) {
      d.block = true;
      int logical = 0;
      unsigned int physical = 0;
      if (ioctl(fd, BLKSSZGET, &logical) < 0) throw SysError{errno, "ioctl BLKSSZGET", ""};
      if (ioctl(fd, BLKPBSZGET, &physical) < 0) throw SysError{errno, "ioctl BLKPBSZGET", ""};
      d.logical = static_cast<uint32_t>(logical);
      d.physical = physical;
      d.Size();  // BLKGETSIZE64 works on it
    } else if (!S_ISREG(st.st_mode)) {
      throw SysError{ENOTBLK, "open", "neither a block device nor a regular file"};
    }
    size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    size_t align = std::max<size_t>(d.logical, page);
    size_t unit = std::max<size_t>(d.logical, d.physical);
    d.cap = static_cast<size_t>(RoundUp(std::max<size_t>(bufferSize_, unit), unit));
    void* p = nullptr;
    int err = posix_memalign(&p, align, d.cap);
    if (err != 0) throw SysError{err, "posix_memalign", std::to_string(d.cap) + " bytes"};
    d.buf = static_cast<uint8_t*>(p);
  }

  Napi::Value Result(Napi::Env env) override {
    Napi::Object obj = env.GetInstanceData<AddonData>()->handleConstructor.New({});
    Handle::Unwrap(obj)->Attach(dev_);
    return obj;
  }

 private:
  bool write_, exclusive_, direct_;
  size_t bufferSize_;
};

bool Flag(Napi::Object options, const char* name) {
  Napi::Value v = options.Get(name);
  return v.IsBoolean() && v.As<Napi::Boolean>().Value();
}

Napi::Value Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "path must be a string");
  Napi::Object options = info.Length() > 1 && info[1].IsObject() ? info[1].As<Napi::Object>() : Napi::Object::New(env);
  size_t bufferSize = 4 << 20;
  Napi::Value bs = options.Get("bufferSize");
  if (!bs.IsUndefined()) {
    if (!bs.IsNumber()) throw Napi::TypeError::New(env, "bufferSize must be a number");
    double v = bs.As<Napi::Number>().DoubleValue();
    if (!(v >= 1) || v > (1u << 30)) throw Napi::RangeError::New(env, "bufferSize must be between 1 byte and 1 GiB");
    bufferSize = static_cast<size_t>(v);
  }
  auto* w = new OpenWorker(env, info[0].As<Napi::String>().Utf8Value(), Flag(options, "write"), Flag(options, "exclusive"),
                           Flag(options, "direct"), bufferSize);
  w->Queue();
  return w->Promise();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData();
  data->handleConstructor = Napi::Persistent(Handle::Define(env));
  env.SetInstanceData<AddonData>(data);
  exports.Set("open", Napi::Function::New<Open>(env, "open"));
  return exports;
}

}  // namespace

NODE_API_MODULE(pi_image_block_device, Init)
