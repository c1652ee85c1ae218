module deferscope.test/httpbench

go 1.19
