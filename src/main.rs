fn main() {
    let inst = sparq::gpu::instance();
    for (i, a) in sparq::gpu::enumerate_adapters(&inst).iter().enumerate() {
        let c = sparq::gpu::Caps::of_adapter(a, &inst);
        println!("[{i}] {}\n{}", c.name, c.describe());
    }
}
